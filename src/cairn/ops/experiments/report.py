"""``cairn experiments report``: how the variants of an experiment did, from the audit trail and feedback.

Each answer of an experiment carries its variant label (``experiment:variant``) in its audit record,
so the report needs no logging of its own: it reads the answers of those labels and the feedback
given on them. Per variant:

``n``
    answers (``ask`` and ``chat`` records); ``users``: distinct users who got them.
``feedback_rate``
    share of answers that received any feedback (vote, flag, comment, correction).
``upvote_rate``
    among answers with a vote, the share whose latest vote is up.
``refusal_rate``
    share of answers that were refusals.
``grounding_failure_rate``
    among answers the groundedness check judged, the share with an unsupported sentence (verdict
    ``partial`` or ``unsupported``: removed, annotated or refused per policy); ``supported_ratio`` is
    the mean share of supported sentences of those answers.
``latency_ms``
    the answer's total time: p50 (with a bootstrap interval), p95.

Every proportion has a Wilson interval; each variant is tested against the control (two-proportion
z-test; Mann-Whitney U for latency), and called significant when p is below ``alpha`` divided by the
number of comparisons (Bonferroni), once both samples reach ``min_samples``: below that the test is
not run and the figure says ``not enough data``. The split of users across variants is checked
against the weights (sample ratio mismatch), which catches broken assignment or logging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cairn.ops.audit import require_admin
from cairn.ops.experiments import stats
from cairn.ops.experiments.model import Experiment
from cairn.ops.stats import two_proportion_z
from cairn.types import Principal

if TYPE_CHECKING:
    from cairn.index.db import Database

PROPORTIONS = ("feedback_rate", "upvote_rate", "refusal_rate", "grounding_failure_rate")
NOT_ENOUGH = "not enough data"


@dataclass(frozen=True, slots=True)
class Observation:
    """One answer given under a variant, with what was said about it."""

    variant: str
    user_id: int | None
    refused: bool
    latency_ms: float | None
    feedback: bool
    vote: int | None  # the latest vote
    grounded: bool | None  # None: the groundedness check did not judge it
    supported_ratio: float | None


def observations(db: Database, principal: Principal, experiment: Experiment) -> list[Observation]:
    """The experiment's answers from the audit trail (administrators: the trail is theirs to read)."""
    require_admin(principal, "reading an experiment's results")
    labels = experiment.labels()
    with db.connection(principal) as conn:
        rows = conn.execute(
            "SELECT a.record ->> 'variant', a.user_id, coalesce((a.record ->> 'refused')::boolean, false),"
            " (a.record -> 'timings_ms' ->> 'total')::float8,"
            " a.record -> 'grounding' ->> 'verdict', (a.record -> 'grounding' ->> 'supported_ratio')::float8,"
            " EXISTS (SELECT 1 FROM feedback f WHERE f.audit_id = a.id),"
            " (SELECT f.vote FROM feedback f WHERE f.audit_id = a.id AND f.vote IS NOT NULL ORDER BY f.id DESC LIMIT 1)"
            " FROM audit_log a WHERE a.kind IN ('ask', 'chat') AND a.record ->> 'variant' = ANY(%s) ORDER BY a.id",
            (list(labels),),
        ).fetchall()
    return [
        Observation(
            variant=labels[r[0]],
            user_id=r[1],
            refused=bool(r[2]),
            latency_ms=r[3],
            feedback=bool(r[6]),
            vote=r[7],
            grounded=None if r[4] is None else r[4] == "grounded",
            supported_ratio=r[5] if r[4] is not None else None,
        )
        for r in rows
    ]


def _proportion(successes: int, n: int, alpha: float) -> dict[str, Any]:
    if n == 0:
        return {"successes": 0, "n": 0, "rate": None, "ci": None}
    low, high = stats.wilson(successes, n, 1.0 - alpha)
    return {"successes": successes, "n": n, "rate": round(successes / n, 4), "ci": [round(low, 4), round(high, 4)]}


def _counts(items: Sequence[Observation]) -> dict[str, tuple[int, int]]:
    voted = [o for o in items if o.vote is not None]
    judged = [o for o in items if o.grounded is not None]
    return {
        "feedback_rate": (sum(o.feedback for o in items), len(items)),
        "upvote_rate": (sum(o.vote == 1 for o in voted), len(voted)),
        "refusal_rate": (sum(o.refused for o in items), len(items)),
        "grounding_failure_rate": (sum(not o.grounded for o in judged), len(judged)),
    }


def _latency(values: Sequence[float], alpha: float) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p50_ci": None}
    low, high = stats.bootstrap_ci(values, confidence=1.0 - alpha)
    return {
        "n": len(values),
        "p50": round(stats.percentile(values, 50), 1),
        "p95": round(stats.percentile(values, 95), 1),
        "p50_ci": [round(low, 1), round(high, 1)],
    }


def _verdict(p: float, threshold: float) -> str:
    return "significant" if p < threshold else "not significant"


def build_report(
    experiment: Experiment,
    items: Iterable[Observation],
    *,
    min_samples: int = 30,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The report as JSON data (``cairn experiments report --json`` prints exactly this)."""
    if min_samples < 1 or not 0.0 < alpha < 1.0:
        raise ValueError("min_samples must be >= 1 and alpha between 0 and 1")
    by_variant: dict[str, list[Observation]] = {v.name: [] for v in experiment.variants}
    for item in items:
        by_variant[item.variant].append(item)
    control = experiment.control.name
    comparisons = max(1, len(experiment.variants) - 1)
    threshold = alpha / comparisons
    base = _counts(by_variant[control])
    base_latency = [o.latency_ms for o in by_variant[control] if o.latency_ms is not None]
    variants = []
    for variant in experiment.variants:
        items_v = by_variant[variant.name]
        counts = _counts(items_v)
        entry: dict[str, Any] = {
            "variant": variant.name,
            "control": variant.name == control,
            "overrides": variant.overrides,
            "weight": variant.weight,
            "n": len(items_v),
            "users": len({o.user_id for o in items_v}),
        }
        for metric in PROPORTIONS:
            x, n = counts[metric]
            figure = _proportion(x, n, alpha)
            if variant.name != control:
                bx, bn = base[metric]
                if min(n, bn) < min_samples:
                    figure["vs_control"] = {"note": f"{NOT_ENOUGH} (n={n} vs {bn}, need {min_samples})"}
                else:
                    z, p = two_proportion_z(x, n, bx, bn)
                    figure["vs_control"] = {
                        "difference": round(x / n - bx / bn, 4),
                        "z": round(z, 3),
                        "p": stats.significant_digits(p),
                        "verdict": _verdict(p, threshold),
                    }
            entry[metric] = figure
        ratios = [o.supported_ratio for o in items_v if o.supported_ratio is not None]
        entry["supported_ratio"] = {
            "n": len(ratios),
            "mean": round(sum(ratios) / len(ratios), 4) if ratios else None,
        }
        latencies = [o.latency_ms for o in items_v if o.latency_ms is not None]
        latency = _latency(latencies, alpha)
        if variant.name != control:
            if min(len(latencies), len(base_latency)) < min_samples:
                latency["vs_control"] = {
                    "note": f"{NOT_ENOUGH} (n={len(latencies)} vs {len(base_latency)}, need {min_samples})"
                }
            else:
                u, p = stats.mann_whitney(latencies, base_latency)
                latency["vs_control"] = {
                    "difference_p50": round(stats.percentile(latencies, 50) - stats.percentile(base_latency, 50), 1),
                    "u": u,
                    "p": stats.significant_digits(p),
                    "verdict": _verdict(p, threshold),
                }
        entry["latency_ms"] = latency
        variants.append(entry)
    users = [v["users"] for v in variants]
    srm = None
    if sum(users) >= min_samples:
        srm = round(stats.sample_ratio_p(users, [v.weight for v in experiment.variants]), 4)
    return {
        "experiment": experiment.name,
        "status": experiment.status,
        "scope": experiment.scope,
        "rollout": experiment.rollout,
        "groups": list(experiment.groups),
        "control": control,
        "answers": sum(v["n"] for v in variants),
        "min_samples": min_samples,
        "alpha": alpha,
        "alpha_per_comparison": round(threshold, 6),
        "sample_ratio_p": srm,
        "sample_ratio_mismatch": srm is not None and srm < 0.001,
        "variants": variants,
    }
