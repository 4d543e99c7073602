"""``cairn experiments offline``: every variant's configuration through the evaluators, before users see it.

Each variant is run on the same queries (BEIR) or questions (QA), so the comparison with the control
is paired: per query, the variant's score minus the control's. The mean difference gets a paired
bootstrap interval and a paired randomization test (``stats``), which is far more sensitive than
comparing two means as if the queries were different people.

On BEIR only the retrieval profile matters (templates and models do not change a ranking), so
variants that share a profile share one run and the report says so. The QA comparison runs the whole
answer path per variant: profile, prompt template and model tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cairn.answer.templates import get_template
from cairn.eval.beir import BeirDataset, latency_summary, per_query_scores, run_queries
from cairn.eval.qa import CaseResult, QACase, citation_supports, run_qa, token_f1
from cairn.ops.experiments import stats
from cairn.ops.experiments.model import Experiment, Variant

if TYPE_CHECKING:
    from cairn.answer.grounding import Policy
    from cairn.assistant import Cairn
    from cairn.retrieve.hybrid import RetrievalConfig

BEIR_METRICS = ("ndcg@10", "recall@100", "mrr@10")
QA_METRICS = ("refusal_correct", "f1", "support", "grounding_failure", "ask_ms")
_MIN_PAIRS = 2


@dataclass(frozen=True, slots=True)
class Arm:
    """A variant as the evaluators run it."""

    variant: Variant
    config: RetrievalConfig

    @property
    def template(self) -> str:
        return get_template(self.variant.template).version


def arms(cairn: Cairn, experiment: Experiment, kb: str) -> list[Arm]:
    """The request config of each variant on ``kb``: its profile, else what a request on ``kb`` gets."""
    return [Arm(v, cairn.config_for([kb], v.profile)) for v in experiment.variants]


def paired(differences: Sequence[float], confidence: float) -> dict[str, Any]:
    """Mean difference, its paired bootstrap interval and the randomization test's p."""
    n = len(differences)
    if n < _MIN_PAIRS:
        return {"pairs": n, "note": "not enough data"}
    mean = sum(differences) / n
    low, high = stats.paired_bootstrap(differences, confidence)
    return {
        "pairs": n,
        "difference": round(mean, 4),
        "ci": [round(low, 4), round(high, 4)],
        "p": stats.significant_digits(stats.sign_flip_test(differences)),
    }


def _compare(
    values: dict[str, dict[str, dict[str, float | None]]],
    experiment: Experiment,
    metrics: Sequence[str],
    alpha: float,
) -> dict[str, dict[str, Any]]:
    """``values[variant][item][metric]`` -> per variant and metric, the paired comparison with the control."""
    control = values[experiment.control.name]
    threshold = alpha / max(1, len(experiment.variants) - 1)
    out: dict[str, dict[str, Any]] = {}
    for variant in experiment.variants[1:]:
        mine = values[variant.name]
        figures: dict[str, Any] = {}
        for metric in metrics:
            diffs = [
                float(a) - float(b)
                for item, scores in mine.items()
                if (a := scores.get(metric)) is not None and (b := control.get(item, {}).get(metric)) is not None
            ]
            figure = paired(diffs, 1.0 - alpha)
            if "p" in figure:
                figure["verdict"] = "significant" if figure["p"] < threshold else "not significant"
            figures[metric] = figure
        out[variant.name] = figures
    return out


def _per_variant(progress: Callable[[str, int], None] | None, name: str) -> Callable[[int], None] | None:
    """An evaluator's progress callback (items done) that also says which variant is running."""
    if progress is None:
        return None
    report = progress
    return lambda done: report(name, done)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def compare_beir(
    cairn: Cairn,
    experiment: Experiment,
    dataset: BeirDataset,
    kb: str,
    *,
    limit: int | None = None,
    alpha: float = 0.05,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Rank the dataset's queries with each variant's retrieval config (the corpus must be indexed in ``kb``)."""
    cairn.retriever.warm_up()  # the first variant must not pay for loading models in its latency
    runs: dict[RetrievalConfig, tuple[dict[str, dict[str, float]], list[float], str]] = {}
    values: dict[str, dict[str, dict[str, float | None]]] = {}
    rows = []
    for arm in arms(cairn, experiment, kb):
        shared = runs.get(arm.config)
        if shared is None:
            run, latencies = run_queries(
                cairn.retriever,
                dataset,
                kb,
                arm.config,
                limit=limit,
                progress=_per_variant(progress, arm.variant.name),
            )
            shared = runs[arm.config] = (per_query_scores(dataset, run), latencies, arm.variant.name)
        scores, latencies, first = shared
        values[arm.variant.name] = dict(scores)  # type: ignore[arg-type]
        rows.append(
            {
                "variant": arm.variant.name,
                "control": arm.variant.name == experiment.control.name,
                "overrides": arm.variant.overrides,
                "profile": arm.config.profile,
                **{m: _mean([s[m] for s in scores.values()]) for m in BEIR_METRICS},
                **{k: round(v, 1) for k, v in latency_summary(latencies).items()},
                **({"same_retrieval_as": first} if first != arm.variant.name else {}),
            }
        )
    comparisons = _compare(values, experiment, BEIR_METRICS, alpha)
    for row in rows:
        if row["variant"] in comparisons:
            row["vs_control"] = comparisons[row["variant"]]
    queries = len(next(iter(values.values()))) if values else 0
    return {"experiment": experiment.name, "dataset": dataset.name, "kb": kb, "queries": queries, "variants": rows}


def _case_scores(result: CaseResult, policy: str) -> dict[str, float | None]:
    """The paired figures of one question: each is None where it does not apply to the case."""
    case, final = result.case, result.outcomes[policy]
    answerable_with_support = not case.unanswerable and case.has_support
    return {
        "refusal_correct": float(final.refused == case.unanswerable),
        "f1": token_f1("" if final.refused else final.answer, case.answers) if case.answers else None,
        "support": (
            float(any(citation_supports(c, case) for c in final.citations)) if answerable_with_support else None
        ),
        # What the checker found in the generated answer, before any policy removed sentences.
        "grounding_failure": (
            float(any(not s.supported for s in result.report.sentences)) if result.report.sentences else None
        ),
        "ask_ms": result.ask_ms,
    }


def compare_qa(
    cairn: Cairn,
    experiment: Experiment,
    cases: Sequence[QACase],
    kb: str,
    *,
    policy: Policy = "remove",
    alpha: float = 0.05,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Ask every question with each variant's profile, template and tier; score and compare per question."""
    cairn.engine.warm_up()
    values: dict[str, dict[str, dict[str, float | None]]] = {}
    rows = []
    for arm in arms(cairn, experiment, kb):
        report = run_qa(
            cairn,
            cases,
            kb,
            grounding=policy,
            config=arm.config,
            template=arm.variant.template,
            tier=arm.variant.tier,
            name=arm.variant.name,
            progress=_per_variant(progress, arm.variant.name),
        )
        per_case = {f"{i}:{r.case.id}": _case_scores(r, policy) for i, r in enumerate(report.results)}
        values[arm.variant.name] = per_case
        after = report.after.to_json()
        rows.append(
            {
                "variant": arm.variant.name,
                "control": arm.variant.name == experiment.control.name,
                "overrides": arm.variant.overrides,
                "profile": arm.config.profile,
                "template": arm.template,
                "generator": report.generator,
                **{m: _mean([s[m] for s in per_case.values()]) for m in QA_METRICS if m != "ask_ms"},
                "ask_p50_ms": report.latency().get("ask_p50_ms"),
                "metrics": after,
            }
        )
    comparisons = _compare(values, experiment, QA_METRICS, alpha)
    for row in rows:
        if row["variant"] in comparisons:
            row["vs_control"] = comparisons[row["variant"]]
    return {"experiment": experiment.name, "kb": kb, "cases": len(cases), "policy": policy, "variants": rows}
