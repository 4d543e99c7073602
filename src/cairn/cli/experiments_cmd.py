"""``cairn experiments``: A/B experiments and progressive rollout (the local operator manages them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cairn.answer.grounding import POLICIES, Policy
from cairn.answer.templates import templates
from cairn.cli.app import app, print_json, want_json_errors
from cairn.cli.context import open_cairn, progress_bar
from cairn.index.access import split_names
from cairn.ops.experiments.model import ALL_SCOPE, STATUSES, Experiment, parse_variant
from cairn.types import SYSTEM

experiments_app = typer.Typer(
    help="A/B experiments on prompt templates, retrieval profiles and model tiers, rolled out progressively.",
    no_args_is_help=True,
)
app.add_typer(experiments_app, name="experiments")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NameArg = Annotated[str, typer.Argument(help="The experiment's name.")]
GroupsOpt = Annotated[
    list[str] | None, typer.Option("--groups", help="Pilot groups (a,b; repeatable): only their members take part.")
]

out = Console()
err = Console(stderr=True)


def _print_experiment(experiment: Experiment) -> None:
    groups = ", ".join(experiment.groups) or "everyone"
    out.print(
        f"[bold]{escape(experiment.name)}[/] ({experiment.status}): scope {escape(experiment.scope)},"
        f" rollout {experiment.rollout:g}%, groups {escape(groups)}, salt {escape(experiment.salt)}"
    )
    if experiment.description:
        out.print(f"  {escape(experiment.description)}")
    table = Table("variant", "weight", "template", "profile", "tier")
    for i, v in enumerate(experiment.variants):
        name = f"{v.name} (control)" if i == 0 and v.name != "control" else v.name
        table.add_row(escape(name), f"{v.weight:g}", v.template or "-", v.profile or "-", v.tier or "-")
    out.print(table)
    for change in experiment.changes:
        out.print(f"  {change['at'][:19]} {escape(change['by'])} {change['action']} {escape(_change(change))}")


def _change(change: dict[str, Any]) -> str:
    """``draft -> running``, ``10% -> 50%``, with the pilot groups when they changed."""
    if "from" not in change:
        return ""
    unit = "%" if change["action"] == "rollout" else ""
    text = f"{change['from']:g}{unit} -> {change['to']:g}{unit}" if unit else f"{change['from']} -> {change['to']}"
    if "groups_to" in change:
        before, after = (", ".join(change[k]) or "everyone" for k in ("groups_from", "groups_to"))
        text += f", groups {before} -> {after}"
    return text


def _emit(experiment: Experiment, json_out: bool) -> None:
    if json_out:
        print_json(experiment.to_json())
    else:
        _print_experiment(experiment)


@experiments_app.command("create")
def experiments_create(
    name: NameArg,
    variant: Annotated[
        list[str],
        typer.Option(
            "--variant",
            help="NAME[:template=T,profile=P,tier=T,weight=W] (repeat; the first is the control).",
        ),
    ],
    scope: Annotated[str, typer.Option(help="The knowledge base it applies to, or '*' for every request.")] = ALL_SCOPE,
    rollout: Annotated[float, typer.Option(min=0.0, max=100.0, help="Percent of eligible users in it.")] = 0.0,
    groups: GroupsOpt = None,
    salt: Annotated[str | None, typer.Option(help="Assignment salt (default: the name).")] = None,
    description: Annotated[str, typer.Option(help="What it tests, in a sentence.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Define an experiment as a draft: its variants, scope, rollout and pilot groups."""
    want_json_errors(json_out)
    experiment = Experiment(
        name=name,
        variants=tuple(parse_variant(v) for v in variant),
        scope=scope,
        rollout=rollout,
        groups=tuple(split_names(groups)),
        salt=salt or "",
        description=description.strip(),
    )
    cairn = open_cairn()
    _emit(cairn.experiments.create(SYSTEM, experiment), json_out)
    cairn.close()


@experiments_app.command("list")
def experiments_list(
    status: Annotated[
        str | None, typer.Option(help=f"Only experiments in this status ({', '.join(STATUSES)}).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Every experiment with its status, scope and rollout."""
    want_json_errors(json_out)
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"one of {', '.join(STATUSES)}", param_hint="--status")
    cairn = open_cairn()
    experiments = cairn.experiments.list(SYSTEM, status=status)
    if json_out:
        print_json({"experiments": [e.to_json() for e in experiments]})
    else:
        table = Table("name", "status", "scope", "rollout", "groups", "variants", "started")
        for e in experiments:
            table.add_row(
                escape(e.name),
                e.status,
                escape(e.scope),
                f"{e.rollout:g}%",
                escape(", ".join(e.groups) or "everyone"),
                escape(", ".join(v.name for v in e.variants)),
                e.started_at.strftime("%Y-%m-%d %H:%M") if e.started_at else "",
            )
        out.print(table)
    cairn.close()


@experiments_app.command("show")
def experiments_show(name: NameArg, json_out: JsonOpt = False) -> None:
    """One experiment: variants and overrides, and every change made to it (who, when)."""
    want_json_errors(json_out)
    cairn = open_cairn()
    _emit(cairn.experiments.get(SYSTEM, name), json_out)
    cairn.close()


def _transition(name: str, command: str, json_out: bool) -> None:
    want_json_errors(json_out)
    cairn = open_cairn()
    _emit(cairn.experiments.transition(SYSTEM, name, command), json_out)
    cairn.close()


@experiments_app.command("start")
def experiments_start(name: NameArg, json_out: JsonOpt = False) -> None:
    """Start (or resume) an experiment: eligible users in the rollout get their variant."""
    _transition(name, "start", json_out)


@experiments_app.command("pause")
def experiments_pause(name: NameArg, json_out: JsonOpt = False) -> None:
    """Pause an experiment: everyone gets the default until it is started again."""
    _transition(name, "pause", json_out)


@experiments_app.command("stop")
def experiments_stop(name: NameArg, json_out: JsonOpt = False) -> None:
    """Stop an experiment for good (its results stay readable with `report`)."""
    _transition(name, "stop", json_out)


@experiments_app.command("rollout")
def experiments_rollout(
    name: NameArg,
    percent: Annotated[float, typer.Argument(min=0.0, max=100.0, help="Percent of eligible users in it.")],
    groups: GroupsOpt = None,
    all_groups: Annotated[bool, typer.Option("--all-groups", help="Open it to every user (no pilot groups).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Change the rollout: users already in keep their variant when it grows."""
    want_json_errors(json_out)
    if groups and all_groups:
        raise typer.BadParameter("--groups and --all-groups exclude each other")
    new_groups = [] if all_groups else split_names(groups) if groups else None
    cairn = open_cairn()
    _emit(cairn.experiments.set_rollout(SYSTEM, name, percent, groups=new_groups), json_out)
    cairn.close()


@experiments_app.command("delete")
def experiments_delete(name: NameArg) -> None:
    """Delete a draft (an experiment that ran stays: the audit trail refers to it)."""
    cairn = open_cairn()
    cairn.experiments.delete(SYSTEM, name)
    out.print(f"deleted draft {name}")
    cairn.close()


@experiments_app.command("templates")
def experiments_templates(json_out: JsonOpt = False) -> None:
    """The prompt templates a variant can name (by name: the current version; or by version)."""
    want_json_errors(json_out)
    known = templates()
    if json_out:
        print_json({"templates": [t.to_json() for t in known]})
        return
    table = Table("name", "version", "description")
    for t in known:
        table.add_row(t.name, t.version, escape(t.description))
    out.print(table)


# -- report ---------------------------------------------------------------------------------------

_RATES = (
    ("feedback", "feedback_rate"),
    ("up-votes", "upvote_rate"),
    ("refusals", "refusal_rate"),
    ("grounding failures", "grounding_failure_rate"),
)


def _rate_cell(figure: dict[str, Any]) -> str:
    if figure["rate"] is None:
        return "-"
    low, high = figure["ci"]
    return f"{figure['rate']:.1%} [{low:.1%}, {high:.1%}] n={figure['n']}"


def _versus(figure: dict[str, Any]) -> str:
    """The test against the control under the figure: p and its verdict, or why there is none."""
    versus = figure.get("vs_control")
    if versus is None:
        return ""
    if "note" in versus:
        return f"\n[dim]{escape(str(versus['note']))}[/]"
    style = "bold green" if versus["verdict"] == "significant" else "dim"
    return f"\n[{style}]p={versus['p']:.3g} {versus['verdict']}[/]"


def print_report(report: dict[str, Any]) -> None:
    """Figures as rows, variants as columns: readable in a terminal with several variants."""
    groups = ", ".join(report["groups"]) or "everyone"
    out.print(
        f"[bold]{escape(report['experiment'])}[/] ({report['status']}): {report['answers']} answers, scope"
        f" {escape(report['scope'])}, rollout {report['rollout']:g}% of {escape(groups)}"
    )
    variants = report["variants"]
    table = Table(
        "",
        *(
            escape(v["variant"]) + (" (control)" if v["control"] and v["variant"] != "control" else "")
            for v in variants
        ),
    )
    table.add_row("answers (users)", *(f"{v['n']} ({v['users']})" for v in variants))
    for label, key in _RATES:
        table.add_row(label, *(_rate_cell(v[key]) + _versus(v[key]) for v in variants))
    table.add_row(
        "supported share",
        *("-" if v["supported_ratio"]["mean"] is None else f"{v['supported_ratio']['mean']:.2f}" for v in variants),
    )
    cells = []
    for v in variants:
        latency = v["latency_ms"]
        if latency["p50"] is None:
            cells.append("-")
            continue
        low, high = latency["p50_ci"]
        cells.append(f"{latency['p50']:.0f} [{low:.0f}, {high:.0f}] / {latency['p95']:.0f}" + _versus(latency))
    table.add_row("latency p50 / p95 ms", *cells)
    out.print(table)
    out.print(
        f"Intervals: Wilson (rates), bootstrap (median); tests against {escape(report['control'])} at"
        f" {report['alpha_per_comparison']:g} (alpha {report['alpha']:g}, Bonferroni), from n={report['min_samples']}."
    )
    if report["sample_ratio_mismatch"]:
        err.print(
            "[red]sample ratio mismatch[/]: the users' split does not follow the weights"
            f" (p={report['sample_ratio_p']}): assignment or logging is broken, do not trust these figures"
        )


@experiments_app.command("report")
def experiments_report(
    name: NameArg,
    min_samples: Annotated[
        int | None, typer.Option(min=1, help="Samples both sides need before a test (default: the setting).")
    ] = None,
    alpha: Annotated[float | None, typer.Option(min=0.0001, max=0.5, help="Significance level.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare the variants on feedback, up-votes, refusals, groundedness and latency, against the control."""
    want_json_errors(json_out)
    cairn = open_cairn()
    report = cairn.experiments.report(SYSTEM, name, min_samples=min_samples, alpha=alpha)
    if json_out:
        print_json(report)
    else:
        print_report(report)
    cairn.close()


# -- offline --------------------------------------------------------------------------------------


def _diff(row: dict[str, Any], metric: str) -> str:
    """The paired difference with the control under a variant's mean, or why there is none."""
    versus = row.get("vs_control", {}).get(metric)
    if versus is None:
        return ""
    if "note" in versus:
        return f"\n[dim]{escape(str(versus['note']))} ({versus['pairs']} pairs)[/]"
    low, high = versus["ci"]
    style = "bold green" if versus["verdict"] == "significant" else "dim"
    return f"\n[{style}]Δ {versus['difference']:+.3f} [{low:+.3f}, {high:+.3f}] p={versus['p']:.3g}[/]"


def print_offline(result: dict[str, Any], metrics: tuple[str, ...], title: str) -> None:
    """Metrics as rows, variants as columns; under each variant's mean, its paired difference."""
    out.print(f"[bold]{escape(title)}[/]")
    variants = result["variants"]
    table = Table(
        "",
        *(
            escape(v["variant"]) + (" (control)" if v["control"] and v["variant"] != "control" else "")
            for v in variants
        ),
    )
    for metric in metrics:
        paired = "ask_ms" if metric == "ask_p50_ms" else metric  # latency: the paired per-question times
        cells = ["-" if v.get(metric) is None else f"{v[metric]:.3f}" + _diff(v, paired) for v in variants]
        table.add_row(metric, *cells)
    out.print(table)


@experiments_app.command("offline")
def experiments_offline(
    name: NameArg,
    beir: Annotated[Path | None, typer.Option("--beir", help="BEIR folder: compare the variants' retrieval.")] = None,
    qa: Annotated[
        Path | None, typer.Option("--qa", help="QA file (JSON Lines): compare the variants' answers.")
    ] = None,
    scifact: Annotated[
        Path | None, typer.Option("--scifact", help="Build the SciFact-derived QA set from this BEIR folder.")
    ] = None,
    kb: Annotated[
        str | None, typer.Option("--kb", help="Knowledge base (default: beir-NAME, qa-scifact, default).")
    ] = None,
    split: Annotated[str, typer.Option(help="BEIR qrels split.")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N queries / questions.")] = None,
    grounding: Annotated[
        str, typer.Option(help="QA: the grounding policy to score (off, annotate, remove, refuse).")
    ] = "remove",
    generator: Annotated[str | None, typer.Option(help="Override CAIRN_GENERATOR, e.g. 'extractive:'.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run each variant's configuration on the eval sets; paired differences against the control."""
    want_json_errors(json_out)
    if beir is None and qa is None and scifact is None:
        raise typer.BadParameter("give --beir DIR, --qa FILE or --scifact DIR")
    if qa is not None and scifact is not None:
        raise typer.BadParameter("--qa and --scifact exclude each other")
    if grounding not in get_args(Policy):
        raise typer.BadParameter(f"one of {', '.join(POLICIES)}", param_hint="--grounding")
    from cairn.eval.beir import kb_name_for, load_beir
    from cairn.eval.qa import build_scifact_qa, load_qa, sync_documents
    from cairn.ops.experiments.offline import BEIR_METRICS, compare_beir, compare_qa

    # The engine's own grounding must not touch the answers: the QA evaluator applies the policy itself.
    cairn = open_cairn(generator=generator, grounding_policy="off")
    experiment = cairn.experiments.get(SYSTEM, name)
    alpha = cairn.settings.experiment_alpha
    result: dict[str, Any] = {"experiment": experiment.name}
    with progress_bar(quiet=json_out) as progress:

        def advance(task: Any) -> Any:
            return lambda variant, n: progress.update(task, completed=n, description=variant)

        if beir is not None:
            dataset = load_beir(beir, split)
            beir_kb = kb or kb_name_for(dataset)
            task = progress.add_task("index corpus", total=None)
            cairn.ingestor.ingest_documents(beir_kb, dataset.corpus(), progress=lambda _: progress.advance(task))
            qtask = progress.add_task("queries", total=min(len(dataset.queries), limit or len(dataset.queries)))
            result["beir"] = compare_beir(
                cairn, experiment, dataset, beir_kb, limit=limit, alpha=alpha, progress=advance(qtask)
            )
        if qa is not None or scifact is not None:
            if scifact is not None:
                documents, cases = build_scifact_qa(scifact)
                qa_kb = kb or "qa-scifact"
                task = progress.add_task("index documents", total=len(documents))
                sync_documents(cairn, qa_kb, documents, progress=lambda: progress.advance(task))
            else:
                assert qa is not None
                cases, qa_kb = load_qa(qa), kb or "default"
            selected = cases[:limit]
            qtask = progress.add_task("questions", total=len(selected))
            result["qa"] = compare_qa(
                cairn,
                experiment,
                selected,
                qa_kb,
                policy=grounding,  # type: ignore[arg-type]  # checked against Policy above
                alpha=alpha,
                progress=advance(qtask),
            )
    if json_out:
        print_json(result)
    else:
        if "beir" in result:
            b = result["beir"]
            print_offline(b, (*BEIR_METRICS, "p50_ms"), f"{b['dataset']}: {b['queries']} queries on {b['kb']}")
        if "qa" in result:
            q = result["qa"]
            metrics = ("refusal_correct", "f1", "support", "grounding_failure", "ask_p50_ms")
            print_offline(q, metrics, f"QA: {q['cases']} questions, grounding policy {q['policy']}")
        out.print(
            "Δ: mean paired difference against the control, bootstrap interval, randomization test"
            f" (significant below {alpha / max(1, len(experiment.variants) - 1):g}: alpha, Bonferroni)"
        )
    cairn.close()
