"""The signals of a drift report, their thresholds and verdicts, and the report as JSON.

Each signal compares the reference window with the current one and has one verdict:

``ok``
    The change is within its threshold.
``drift``
    It crossed it: a test's p-value fell below its threshold (alpha), or a PSI reached its
    threshold.
``insufficient_data``
    One of the windows has fewer samples than ``min_samples``: no verdict either way.

The thresholds come from the settings (``CAIRN_DRIFT_ALPHA``, ``CAIRN_DRIFT_PSI_THRESHOLD``, and
per signal ``CAIRN_DRIFT_THRESHOLDS``); docs/drift.md says what each signal means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from cairn.errors import ConfigError, InputError
from cairn.ops.drift.windows import Window

if TYPE_CHECKING:
    from cairn.ops.drift.data import WindowData
    from cairn.settings import Settings

OK, DRIFT, INSUFFICIENT = "ok", "drift", "insufficient_data"
VERDICTS = (OK, DRIFT, INSUFFICIENT)
Test = Literal["p_value", "psi"]


@dataclass(frozen=True, slots=True)
class SignalKind:
    """What a signal measures: its group, the statistic it reports and how its verdict is reached."""

    name: str
    group: str
    statistic: str
    test: Test  # p_value: drift when p < threshold; psi: drift when the PSI >= threshold
    description: str


SIGNAL_KINDS: dict[str, SignalKind] = {
    kind.name: kind
    for kind in (
        SignalKind("query_mmd", "input", "MMD²", "p_value", "Question embeddings: MMD with a permutation test."),
        SignalKind("query_topics", "input", "PSI", "psi", "Shares of the reference window's topic clusters."),
        SignalKind("top_score_psi", "retrieval", "PSI", "psi", "Top retrieval score: PSI over reference deciles."),
        SignalKind("top_score_ks", "retrieval", "KS D", "p_value", "Top retrieval score: Kolmogorov-Smirnov test."),
        SignalKind("refusal_rate", "retrieval", "Δ rate", "p_value", "Share of answers refused."),
        SignalKind("answer_length", "behaviour", "KS D", "p_value", "Answer length in words (answered only)."),
        SignalKind("grounding_supported", "behaviour", "KS D", "p_value", "Supported-claims ratio of answers."),
        SignalKind("grounding_failure_rate", "behaviour", "Δ rate", "p_value", "Share of answers not fully grounded."),
        SignalKind("feedback_down_rate", "behaviour", "Δ rate", "p_value", "Share of voted answers voted down."),
    )
}
SIGNALS = tuple(SIGNAL_KINDS)


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Thresholds and effort of a report; :meth:`from_settings` reads the ``CAIRN_DRIFT_*`` settings."""

    min_samples: int = 50
    alpha: float = 0.01
    psi_threshold: float = 0.2
    thresholds: Mapping[str, float] = field(default_factory=dict)
    topics: int = 8
    permutations: int = 500
    max_samples: int = 1000
    window_days: float = 7.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.thresholds) - set(SIGNALS))
        if unknown:
            raise ConfigError(
                f"drift thresholds for unknown signals: {', '.join(unknown)}", hint=f"signals: {', '.join(SIGNALS)}"
            )
        for name, value in self.thresholds.items():
            if not (math.isfinite(value) and value > 0 and (SIGNAL_KINDS[name].test == "psi" or value < 1)):
                raise ConfigError(
                    f"the drift threshold of {name} must be a p-value in (0, 1) or a PSI > 0, not {value}"
                )
        if self.min_samples < 2:
            raise InputError(f"min_samples must be at least 2, not {self.min_samples}")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.psi_threshold <= 0:
            raise InputError(f"the PSI threshold must be positive, not {self.psi_threshold}")
        if self.topics < 2:
            raise InputError(f"topics must be at least 2, not {self.topics}")
        if self.permutations < 1:
            raise InputError(f"permutations must be at least 1, not {self.permutations}")
        if self.max_samples < self.min_samples:
            raise InputError(f"max_samples ({self.max_samples}) must be at least min_samples ({self.min_samples})")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DriftConfig:
        values: dict[str, Any] = {
            "min_samples": settings.drift_min_samples,
            "alpha": settings.drift_alpha,
            "psi_threshold": settings.drift_psi_threshold,
            "thresholds": dict(settings.drift_thresholds),
            "topics": settings.drift_topics,
            "permutations": settings.drift_permutations,
            "max_samples": settings.drift_max_samples,
            "window_days": settings.drift_window_days,
        }
        return cls(**(values | {k: v for k, v in overrides.items() if v is not None}))

    def threshold(self, name: str) -> float:
        if name in self.thresholds:
            return float(self.thresholds[name])
        return self.psi_threshold if SIGNAL_KINDS[name].test == "psi" else self.alpha


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal's outcome. ``reference``/``current`` summarise each window (``n`` is its sample size)."""

    name: str
    statistic: float | None
    p_value: float | None
    threshold: float
    verdict: str
    reference: dict[str, Any]
    current: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self) -> None:
        if self.name not in SIGNAL_KINDS:
            raise InputError(f"unknown drift signal {self.name!r}")
        if self.verdict not in VERDICTS:
            raise InputError(f"unknown drift verdict {self.verdict!r}")

    @property
    def kind(self) -> SignalKind:
        return SIGNAL_KINDS[self.name]

    @property
    def value(self) -> float | None:
        """What the threshold is compared with: the p-value of a test, the PSI itself."""
        return self.p_value if self.kind.test == "p_value" else self.statistic

    def to_json(self) -> dict[str, Any]:
        kind = self.kind
        return {
            "signal": self.name,
            "group": kind.group,
            "statistic_name": kind.statistic,
            "statistic": _number(self.statistic),
            "p_value": _number(self.p_value),
            "value": _number(self.value),
            "threshold": self.threshold,
            "alert_when": "p_value < threshold" if kind.test == "p_value" else "statistic >= threshold",
            "verdict": self.verdict,
            "reason": self.reason,
            "reference": self.reference,
            "current": self.current,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Signal:
        return cls(
            name=str(obj["signal"]),
            statistic=obj.get("statistic"),
            p_value=obj.get("p_value"),
            threshold=float(obj["threshold"]),
            verdict=str(obj["verdict"]),
            reference=dict(obj.get("reference") or {}),
            current=dict(obj.get("current") or {}),
            details=dict(obj.get("details") or {}),
            reason=str(obj.get("reason") or ""),
        )


def verdict_of(name: str, statistic: float, p_value: float | None, threshold: float) -> str:
    if SIGNAL_KINDS[name].test == "p_value":
        assert p_value is not None
        return DRIFT if p_value < threshold else OK
    return DRIFT if statistic >= threshold else OK


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every signal between two windows. ``samples`` (not serialised) feeds the plot."""

    reference: Window
    current: Window
    signals: tuple[Signal, ...]
    computed_at: datetime
    seconds: float
    embedder: str
    records: tuple[int, int] = (0, 0)  # audited interactions read from each window
    config: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)  # read, embed, statistics
    samples: tuple[WindowData, WindowData] | None = field(default=None, compare=False, repr=False)

    @property
    def alerts(self) -> list[str]:
        return [s.name for s in self.signals if s.verdict == DRIFT]

    @property
    def drift(self) -> bool:
        return bool(self.alerts)

    def signal(self, name: str) -> Signal:
        for signal in self.signals:
            if signal.name == name:
                return signal
        raise InputError(f"the report has no signal {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference.to_json(),
            "current": self.current.to_json(),
            "computed_at": self.computed_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "timings_s": dict(self.timings_s),
            "embedder": self.embedder,
            "records": {"reference": self.records[0], "current": self.records[1]},
            "drift": self.drift,
            "alerts": self.alerts,
            "config": self.config,
            "signals": [s.to_json() for s in self.signals],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DriftReport:
        return cls(
            reference=Window.from_json(obj["reference"]),
            current=Window.from_json(obj["current"]),
            signals=tuple(Signal.from_json(s) for s in obj["signals"]),
            computed_at=datetime.fromisoformat(obj["computed_at"]),
            seconds=float(obj.get("seconds", 0.0)),
            embedder=str(obj.get("embedder", "")),
            records=(int(obj.get("records", {}).get("reference", 0)), int(obj.get("records", {}).get("current", 0))),
            config=dict(obj.get("config") or {}),
            timings_s={str(k): float(v) for k, v in (obj.get("timings_s") or {}).items()},
        )


__all__ = [
    "DRIFT",
    "INSUFFICIENT",
    "OK",
    "SIGNALS",
    "SIGNAL_KINDS",
    "DriftConfig",
    "DriftReport",
    "Signal",
    "SignalKind",
    "verdict_of",
]
