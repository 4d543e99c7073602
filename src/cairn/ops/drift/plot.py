"""``cairn drift report --plot FILE.png``: one picture of a report, reference against current.

matplotlib is an optional extra (``pip install 'cairn[plot]'``): without it, plotting fails with a
clear error and everything else works.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.errors import ConfigError, InputError
from cairn.ops.drift.report import DRIFT, INSUFFICIENT, DriftReport, Signal

if TYPE_CHECKING:
    from matplotlib.axes import Axes

REFERENCE_COLOUR, CURRENT_COLOUR = "#6b7b8c", "#d9822b"
VERDICT_COLOUR = {DRIFT: "#c23030", INSUFFICIENT: "#8a8a8a"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib, which is not installed",
            hint="pip install 'cairn[plot]' (or leave out --plot)",
        ) from None
    matplotlib.use("Agg")  # files only: never a display
    import matplotlib.pyplot as plt

    return plt


def _title(ax: Axes, signal: Signal, text: str) -> None:
    if signal.verdict == INSUFFICIENT:
        verdict = "insufficient data"
    else:
        number = (
            f"p={signal.p_value:.3g}"
            if signal.p_value is not None
            else f"{signal.kind.statistic}={signal.statistic:.3g}"
        )
        verdict = f"{signal.verdict} ({number})"
    ax.set_title(f"{text}\n{verdict}", fontsize=9, color=VERDICT_COLOUR.get(signal.verdict, "black"))


def _empty(ax: Axes, signal: Signal, text: str) -> None:
    _title(ax, signal, text)
    ax.text(
        0.5, 0.5, signal.reason or "no data", ha="center", va="center", wrap=True, fontsize=7, transform=ax.transAxes
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _histogram(ax: Axes, signal: Signal, text: str, reference: Sequence[float], current: Sequence[float]) -> None:
    if signal.verdict == INSUFFICIENT or not reference or not current:
        _empty(ax, signal, text)
        return
    low, high = min(min(reference), min(current)), max(max(reference), max(current))
    bins = 20 if high > low else 1
    ax.hist(
        reference, bins=bins, range=(low, high), density=True, alpha=0.55, color=REFERENCE_COLOUR, label="reference"
    )
    ax.hist(current, bins=bins, range=(low, high), density=True, alpha=0.55, color=CURRENT_COLOUR, label="current")
    ax.legend(fontsize=7)
    _title(ax, signal, text)


def _topics(ax: Axes, signal: Signal) -> None:
    topics = signal.details.get("topics") or []
    if signal.verdict == INSUFFICIENT or not topics:
        _empty(ax, signal, "question topics (shares)")
        return
    ordered = sorted(topics, key=lambda t: t["topic"])
    labels = [t["label"][:38] for t in ordered] + ["(new: far from every topic)"]
    ref = [t["reference"] for t in ordered] + [signal.reference.get("novel_share") or 0.0]
    cur = [t["current"] for t in ordered] + [signal.current.get("novel_share") or 0.0]
    positions = range(len(labels))
    ax.barh([p - 0.2 for p in positions], ref, 0.4, color=REFERENCE_COLOUR, label="reference")
    ax.barh([p + 0.2 for p in positions], cur, 0.4, color=CURRENT_COLOUR, label="current")
    ax.set_yticks(list(positions), labels, fontsize=6)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    _title(ax, signal, "question topics (shares)")


def _rates(ax: Axes, signals: Sequence[Signal]) -> None:
    names = [s.name.replace("_", " ") for s in signals]
    positions = range(len(signals))
    ref = [s.reference.get("rate") or 0.0 for s in signals]
    cur = [s.current.get("rate") or 0.0 for s in signals]
    ax.bar([p - 0.2 for p in positions], ref, 0.4, color=REFERENCE_COLOUR, label="reference")
    ax.bar([p + 0.2 for p in positions], cur, 0.4, color=CURRENT_COLOUR, label="current")
    ax.set_xticks(list(positions), names, fontsize=7)
    for position, signal in zip(positions, signals, strict=True):
        label = "insufficient" if signal.verdict == INSUFFICIENT else signal.verdict
        ax.text(
            position,
            max(ref[position], cur[position]) + 0.01,
            label,
            ha="center",
            fontsize=7,
            color=VERDICT_COLOUR.get(signal.verdict, "black"),
        )
    ax.set_ylim(0, max([*ref, *cur, 0.05]) * 1.25)
    ax.legend(fontsize=7)
    ax.set_title("rates", fontsize=9)


def plot_report(report: DriftReport, path: Path) -> Path:
    """Write the report's picture to ``path`` (PNG, or any format matplotlib infers from the suffix)."""
    if report.samples is None:
        raise InputError("only a report computed in this process can be plotted (it keeps the samples)")
    plt = _pyplot()
    ref, cur = report.samples
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    mmd = report.signal("query_mmd")
    _topics(axes[0][0], report.signal("query_topics"))
    _histogram(
        axes[0][1],
        report.signal("top_score_ks"),
        f"top retrieval score ({_field(report)})",
        ref.top_scores,
        cur.top_scores,
    )
    _rates(axes[0][2], [report.signal(n) for n in ("refusal_rate", "grounding_failure_rate", "feedback_down_rate")])
    _histogram(
        axes[1][0],
        report.signal("answer_length"),
        "answer length (words)",
        [float(w) for w in ref.answer_words],
        [float(w) for w in cur.answer_words],
    )
    _histogram(
        axes[1][1],
        report.signal("grounding_supported"),
        "supported-claims ratio",
        ref.supported_ratios,
        cur.supported_ratios,
    )
    _summary(axes[1][2], report, mmd)
    figure.suptitle(f"cairn drift: {report.reference.label}  vs  {report.current.label}", fontsize=11)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot write the plot to {path}: {exc}") from exc
    finally:
        plt.close(figure)
    return path


def _field(report: DriftReport) -> str:
    return str(report.signal("top_score_ks").details.get("field", "score"))


def _summary(ax: Axes, report: DriftReport, mmd: Signal) -> None:
    """The verdict of every signal as text: the panel a reader looks at first."""
    ax.axis("off")
    lines = []
    for signal in report.signals:
        value = "" if signal.statistic is None else f"{signal.kind.statistic} {signal.statistic:.3g}"
        if signal.p_value is not None:
            value += f", p={signal.p_value:.3g}"
        verdict = "insufficient data" if signal.verdict == INSUFFICIENT else signal.verdict
        lines.append((f"{signal.name:<24}{verdict:<19}{value}", VERDICT_COLOUR.get(signal.verdict, "black")))
    for row, (text, colour) in enumerate(lines):
        ax.text(
            0.0,
            1.0 - row * 0.09,
            text,
            family="monospace",
            fontsize=7.5,
            color=colour,
            transform=ax.transAxes,
            va="top",
        )
    ax.set_title("signals", fontsize=9)


__all__ = ["plot_report"]
