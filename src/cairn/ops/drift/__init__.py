"""Drift detection: is what users ask, what retrieval finds and how answers turn out still what it was?

A report compares a reference window of the audit trail with a current one (docs/drift.md):

- input: the questions' embeddings (MMD with a permutation test) and their topic mix (PSI over
  k-means clusters of the reference);
- retrieval: the top retrieval score (PSI and KS) and the refusal rate (two-proportion test);
- behaviour: answer length, groundedness (supported ratio, failure rate) and downvotes.

Modules: :mod:`~cairn.ops.drift.stats` (the statistics), :mod:`~cairn.ops.drift.windows`,
:mod:`~cairn.ops.drift.data` (reading the trail), :mod:`~cairn.ops.drift.signals`,
:mod:`~cairn.ops.drift.report`, :mod:`~cairn.ops.drift.detector`, :mod:`~cairn.ops.drift.store`
(published reports), :mod:`~cairn.ops.drift.metrics` (gauges), :mod:`~cairn.ops.drift.monitor`
(the server's refresh) and :mod:`~cairn.ops.drift.plot`. scipy and matplotlib are imported only when
a report is computed or plotted.
"""

from cairn.ops.drift.detector import DriftDetector
from cairn.ops.drift.metrics import DriftGauges
from cairn.ops.drift.monitor import DriftMonitor
from cairn.ops.drift.report import DRIFT, INSUFFICIENT, OK, SIGNALS, DriftConfig, DriftReport, Signal
from cairn.ops.drift.store import DriftStore, Published
from cairn.ops.drift.windows import Window, parse_window, resolve_windows

__all__ = [
    "DRIFT",
    "INSUFFICIENT",
    "OK",
    "SIGNALS",
    "DriftConfig",
    "DriftDetector",
    "DriftGauges",
    "DriftMonitor",
    "DriftReport",
    "DriftStore",
    "Published",
    "Signal",
    "Window",
    "parse_window",
    "resolve_windows",
]
