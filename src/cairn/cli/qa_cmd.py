"""``cairn eval qa``: end-to-end answer quality (refusals, citations, grounding) on a QA set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.table import Table

from cairn.answer.grounding import POLICIES, Policy, create_grounding_checker
from cairn.cli.app import eval_app, print_json, want_json_errors
from cairn.cli.context import (
    CompressOpt,
    ConfigFileOpt,
    DecomposeOpt,
    ParentsOpt,
    ProfileOpt,
    RerankOpt,
    RewriteOpt,
    open_cairn,
    pipeline_config,
    progress_bar,
)
from cairn.eval.qa import QACase, QAMetrics, QAReport, build_scifact_qa, load_qa, run_qa, sync_documents

err = Console(stderr=True)
out = Console()

METRIC_COLUMNS = (
    ("correct refusal", "correct_refusal_rate"),
    ("false refusal", "false_refusal_rate"),
    ("EM", "exact_match"),
    ("F1", "f1"),
    ("cit. precision", "citation_precision"),
    ("support recall", "support_recall"),
    ("unsupported claims", "unsupported_claim_rate"),
    ("claims citing no gold", "gold_unsupported_claim_rate"),
)


@eval_app.command("qa")
def eval_qa(
    file: Annotated[Path | None, typer.Argument(help="QA file (JSON Lines; see docs/grounding.md).")] = None,
    kb: Annotated[str | None, typer.Option("--kb", help="Knowledge base for cases without a 'kb' field.")] = None,
    scifact: Annotated[
        Path | None, typer.Option("--scifact", help="Build the SciFact-derived set from this BEIR folder instead.")
    ] = None,
    generator: Annotated[str | None, typer.Option(help="Override CAIRN_GENERATOR, e.g. 'extractive:'.")] = None,
    grounding: Annotated[str, typer.Option(help="Policy to report: off, annotate, remove or refuse.")] = "remove",
    min_supported: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Supported-claim share below which 'refuse' refuses.")
    ] = 0.5,
    checker: Annotated[str, typer.Option(help="Grounding checker location.")] = "heuristic:",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    answerable: Annotated[int, typer.Option(min=1, help="--scifact: answerable claims.")] = 60,
    unanswerable: Annotated[int, typer.Option(min=0, help="--scifact: held-out claims.")] = 60,
    distractors: Annotated[int, typer.Option(min=0, help="--scifact: other abstracts indexed.")] = 400,
    seed: Annotated[int, typer.Option(help="--scifact: sampling seed.")] = 13,
    profile: ProfileOpt = None,
    config_file: ConfigFileOpt = None,
    rerank: RerankOpt = None,
    rewrite: RewriteOpt = None,
    decompose: DecomposeOpt = None,
    parents: ParentsOpt = None,
    compress: CompressOpt = None,
    cases_out: Annotated[bool, typer.Option("--cases", help="Include every case in the JSON output.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Ask every question, check grounding, and report refusal rates, EM/F1, citation precision."""
    want_json_errors(json_out)
    if grounding not in get_args(Policy):
        raise typer.BadParameter(f"--grounding must be one of {', '.join(POLICIES)}")
    if (file is None) == (scifact is None):
        raise typer.BadParameter("give a QA FILE or --scifact DIR (not both)")
    # The engine's own grounding (if configured) must not touch the answers: every policy is applied here.
    cairn = open_cairn(generator=generator, grounding_policy="off")
    documents = None
    if scifact is not None:
        documents, cases = build_scifact_qa(scifact, answerable, unanswerable, distractors, seed)
        name, kb_name = "scifact-derived", kb or "qa-scifact"
    else:
        assert file is not None
        cases, name, kb_name = load_qa(file), file.name, kb or "default"
    selected: list[QACase] = cases[:limit]
    progress = progress_bar(quiet=json_out)
    with progress:
        if documents is not None:
            task = progress.add_task("index documents", total=len(documents))
            sync_documents(cairn, kb_name, documents, progress=lambda: progress.advance(task))
        qtask = progress.add_task("questions", total=len(selected))
        config = pipeline_config(
            cairn,
            [kb_name],
            profile=profile,
            config_file=config_file,
            rerank=rerank,
            rewrite=rewrite,
            decompose=decompose,
            parents=parents,
            compress=compress,
        )
        report = run_qa(
            cairn,
            selected,
            kb_name,
            config=config,
            grounding=grounding,  # type: ignore[arg-type]  # checked against Policy above
            min_supported=min_supported,
            checker=create_grounding_checker(checker, analyzer=cairn.analyzer, embedder=cairn.embedder),
            name=name,
            progress=lambda n: progress.update(qtask, completed=n),
        )
    if json_out:
        print_json(report.to_json(cases=cases_out))
    else:
        print_report(report)
    cairn.close()


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_report(report: QAReport) -> None:
    before = report.before
    out.print(
        f"[bold]{report.name}[/] on {report.kb}: {before.cases} cases ({before.answerable} answerable,"
        f" {before.unanswerable} unanswerable), generator {report.generator}, checker {report.checker}"
    )
    table = Table("policy", *(label for label, _ in METRIC_COLUMNS))
    rows: dict[str, QAMetrics] = report.by_policy()
    for policy, metrics in rows.items():
        style = "bold" if policy == report.policy else None
        table.add_row(policy, *(_fmt(getattr(metrics, key)) for _, key in METRIC_COLUMNS), style=style)
    out.print(table)
    latency = report.latency()
    out.print(
        f"latency: ask p50 {latency.get('ask_p50_ms', 0):.0f} ms, p95 {latency.get('ask_p95_ms', 0):.0f} ms;"
        f" check p50 {latency.get('check_p50_ms', 0):.0f} ms; context {latency.get('context_words_mean', 0):.0f} words"
    )
    sweep = ", ".join(
        f"{g['min_relevance']}: {_fmt(g['correct_refusal_rate'])}/{_fmt(g['false_refusal_rate'])}"
        for g in report.gate_sweep()
    )
    out.print(f"relevance gate alone (min_relevance: correct/false refusal): {sweep}")
