"""The drift report as Prometheus gauges, set when a report is shown (never computed on a scrape).

One series per signal (nine at most, a fixed set: the ``signal`` label never takes a user's or a
question's value). A signal with insufficient data has no series rather than a stale or made-up
one; ``cairn_drift_report_timestamp_seconds`` says how old the shown report is, for an alert on a
refresh that stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge

if TYPE_CHECKING:
    from cairn.ops.drift.report import DriftReport


class DriftGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.value = Gauge(
            "cairn_drift_value",
            "What each drift signal's threshold is compared with: a test's p-value, or a PSI.",
            ["signal"],
            registry=registry,
        )
        self.statistic = Gauge(
            "cairn_drift_statistic",
            "Each drift signal's statistic: MMD², PSI, KS D, or a rate's change (current - reference).",
            ["signal"],
            registry=registry,
        )
        self.threshold = Gauge(
            "cairn_drift_threshold",
            "Each drift signal's alert threshold (alpha or PSI).",
            ["signal"],
            registry=registry,
        )
        self.alert = Gauge(
            "cairn_drift_alert", "1 when a drift signal crossed its threshold, else 0.", ["signal"], registry=registry
        )
        self.report_time = Gauge(
            "cairn_drift_report_timestamp_seconds",
            "When the drift report shown was computed (Unix time).",
            registry=registry,
        )
        self._shown: set[str] = set()

    def show(self, report: DriftReport) -> None:
        shown: set[str] = set()
        for signal in report.signals:
            if signal.value is None or signal.statistic is None:
                continue
            self.value.labels(signal.name).set(signal.value)
            self.statistic.labels(signal.name).set(signal.statistic)
            self.threshold.labels(signal.name).set(signal.threshold)
            self.alert.labels(signal.name).set(1.0 if signal.verdict == "drift" else 0.0)
            shown.add(signal.name)
        for name in self._shown - shown:
            for gauge in (self.value, self.statistic, self.threshold, self.alert):
                gauge.remove(name)
        self._shown = shown
        self.report_time.set(report.computed_at.timestamp())


__all__ = ["DriftGauges"]
