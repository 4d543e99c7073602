"""Computes a drift report between two windows of the audit trail; an administrator's operation.

The audit trail is admin-only, and so is everything computed from it: :meth:`DriftDetector.report`
refuses anyone else before reading (the Python half), and row-level security would show them an
empty trail anyway (the database half).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from cairn.ops.audit import require_admin
from cairn.ops.drift.data import load_windows, top_score_field
from cairn.ops.drift.report import DriftConfig, DriftReport
from cairn.ops.drift.signals import behaviour_signals, input_signals, retrieval_signals
from cairn.ops.drift.windows import Window, resolve_windows

if TYPE_CHECKING:
    from cairn.index.db import Database
    from cairn.models.base import Embedder
    from cairn.types import Principal

log = logging.getLogger(__name__)


class DriftDetector:
    """Reference window versus current window: input, retrieval and behaviour signals."""

    def __init__(self, db: Database, embedder: Embedder, config: DriftConfig | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self.config = config or DriftConfig()

    def windows(
        self, reference: str | None = None, current: str | None = None, *, now: datetime | None = None
    ) -> tuple[Window, Window]:
        """The windows of written forms (``2026-11-01..2026-11-15``, ``last-7d``; None: the defaults)."""
        return resolve_windows(reference, current, days=self.config.window_days, now=now)

    def report(self, principal: Principal, reference: Window, current: Window) -> DriftReport:
        require_admin(principal, "drift detection (it reads the audit trail)")
        started = time.perf_counter()
        computed_at = datetime.now(UTC)
        ref, cur = load_windows(self.db, principal, reference, current)
        timings = {"read": time.perf_counter() - started, "embed": 0.0}

        def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            t = time.perf_counter()
            vectors = self._embed(texts)
            timings["embed"] += time.perf_counter() - t
            return vectors

        score_field = top_score_field(ref, cur)
        signals = [
            *input_signals(ref, cur, self.config, embed),
            *retrieval_signals(ref, cur, self.config, score_field),
            *behaviour_signals(ref, cur, self.config),
        ]
        seconds = time.perf_counter() - started
        timings["statistics"] = seconds - timings["read"] - timings["embed"]
        records = ref.records + cur.records
        log.info("drift report %s vs %s: %d records in %.1f s", reference.label, current.label, records, seconds)
        return DriftReport(
            reference=reference,
            current=current,
            signals=tuple(signals),
            computed_at=computed_at,
            seconds=seconds,
            timings_s={k: round(v, 3) for k, v in timings.items()},
            embedder=str(getattr(self.embedder, "name", type(self.embedder).__name__)),
            records=(ref.records, cur.records),
            config={k: v for k, v in asdict(self.config).items() if k != "thresholds"}
            | {"thresholds": dict(self.config.thresholds)},
            samples=(ref, cur),
        )

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Questions embedded in batches, as documents are: the same texts give the same vectors in
        both windows, which is all a comparison needs (a query prefix would only shift both alike)."""
        return self.embedder.embed_documents(list(texts))


__all__ = ["DriftDetector"]
