"""``cairn drift report``: has what users ask, what retrieval finds or how answers turn out changed?

The exit status is for cron: 0 when no signal crossed its threshold (signals without enough data
give no verdict), 4 when one did, 1 on an error. A report whose current window ends now is
published, so every ``cairn serve`` on the database shows it as gauges (docs/drift.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import caller, open_cairn
from cairn.ops.drift import DRIFT, INSUFFICIENT, DriftReport, DriftStore, Signal

DRIFT_EXIT = 4

drift_app = typer.Typer(
    help="Drift of questions, retrieval and answers between two time windows.", no_args_is_help=True
)
app.add_typer(drift_app, name="drift")

err = Console(stderr=True)
# Piped into a file or a cron mail, the table keeps one row per line instead of wrapping at 80 columns.
WIDE = 150

_VERDICT_STYLE = {"ok": "green", "drift": "bold red", INSUFFICIENT: "dim"}


def _side(summary: dict[str, Any]) -> str:
    n = summary.get("n", 0)
    if summary.get("rate") is not None:
        return f"{summary['rate']:.1%} of {n}"
    if "novel_share" in summary:
        return f"n={n}, {summary['novel_share']:.0%} novel"
    if "median" in summary:
        return f"median {summary['median']:.3g} (n={n})"
    return f"n={n}"


def _threshold(signal: Signal) -> str:
    return (
        f"p < {signal.threshold:g}"
        if signal.kind.test == "p_value"
        else f"{signal.kind.statistic} ≥ {signal.threshold:g}"
    )


def _print_table(report: DriftReport) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=WIDE)
    ref, cur = report.reference, report.current
    out.print(
        f"reference [bold]{escape(ref.label)}[/] ({ref.start:%Y-%m-%d %H:%M} → {ref.end:%Y-%m-%d %H:%M} UTC):"
        f" {report.records[0]} interactions"
    )
    out.print(
        f"current   [bold]{escape(cur.label)}[/] ({cur.start:%Y-%m-%d %H:%M} → {cur.end:%Y-%m-%d %H:%M} UTC):"
        f" {report.records[1]} interactions"
    )
    table = Table("signal", "group", "reference", "current", "statistic", "p-value", "threshold", "verdict")
    table.columns[0].no_wrap = True
    for signal in report.signals:
        statistic = "—" if signal.statistic is None else f"{signal.kind.statistic} {signal.statistic:.4g}"
        p_value = "—" if signal.p_value is None else f"{signal.p_value:.3g}"
        verdict = "insufficient data" if signal.verdict == INSUFFICIENT else signal.verdict
        table.add_row(
            signal.name,
            signal.kind.group,
            _side(signal.reference),
            _side(signal.current),
            statistic,
            p_value,
            _threshold(signal),
            f"[{_VERDICT_STYLE[signal.verdict]}]{verdict}[/]",
        )
    out.print(table)
    topics = report.signal("query_topics")
    if topics.verdict == DRIFT:
        moved = topics.details.get("topics", [])[:3]
        out.print(
            "topics that moved most: "
            + "; ".join(f"{escape(t['label'][:50])!r} {t['reference']:.0%} → {t['current']:.0%}" for t in moved)
        )
        examples = topics.details.get("novel_examples") or []
        if examples:
            out.print("new kinds of questions: " + "; ".join(repr(escape(e[:60])) for e in examples[:3]))
    for signal in report.signals:
        if signal.verdict == INSUFFICIENT:
            out.print(f"[dim]{signal.name}: {escape(signal.reason)}[/]")
    if report.drift:
        out.print(f"[bold red]drift[/] in {', '.join(report.alerts)} (exit status {DRIFT_EXIT})")
    else:
        out.print("[green]no drift[/]")


@drift_app.command("report")
def report(
    reference: Annotated[
        str | None,
        typer.Option(
            help="Reference window: START..END (ISO dates/times) or last-Nd; default: the span before --current."
        ),
    ] = None,
    current: Annotated[
        str | None, typer.Option(help="Current window, e.g. last-7d (default: the last CAIRN_DRIFT_WINDOW_DAYS days).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the report into this PNG (needs matplotlib: the plot extra)."),
    ] = None,
    min_samples: Annotated[
        int | None,
        typer.Option(min=2, help="Samples each window needs for a verdict (default CAIRN_DRIFT_MIN_SAMPLES)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the permutation test, sampling and topic clustering.")] = 0,
    publish: Annotated[
        bool | None,
        typer.Option(
            "--publish/--no-publish",
            help="Store the report for the servers' gauges (default: when the current window ends now).",
        ),
    ] = None,
    as_user: Annotated[
        str | None, typer.Option("--as-user", help="Run it as this (administrator) user instead of the operator.")
    ] = None,
) -> None:
    """Compare a reference window with a current one: question topics, retrieval scores, refusals,
    answer length, groundedness and feedback. Exit status 4 when a signal drifted."""
    want_json_errors(json_out)
    cairn = open_cairn()
    principal = caller(cairn, as_user)
    detector = cairn.drift
    if min_samples is not None or seed:
        from dataclasses import replace

        overrides: dict[str, Any] = {"seed": seed}
        if min_samples is not None:
            overrides["min_samples"] = min_samples
            overrides["max_samples"] = max(detector.config.max_samples, min_samples)
        detector.config = replace(detector.config, **overrides)
    ref_window, cur_window = detector.windows(reference, current)
    result = detector.report(principal, ref_window, cur_window)
    published = None
    if publish if publish is not None else cur_window.live:
        store = DriftStore(cairn.db, retention_days=cairn.settings.audit_retention_days)
        published = store.publish(principal, result)
    if plot is not None:
        from cairn.ops.drift.plot import plot_report

        plot_report(result, plot)
    if json_out:
        print_json(result.to_json() | {"published": None if published is None else published.id})
    else:
        _print_table(result)
        if plot is not None:
            err.print(f"plot written to {plot}")
    if result.drift:
        raise typer.Exit(DRIFT_EXIT)
