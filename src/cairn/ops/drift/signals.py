"""Each signal of a report, computed from the two windows' samples (see report.SIGNAL_KINDS)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from cairn.ops.drift import stats
from cairn.ops.drift.data import WindowData
from cairn.ops.drift.report import INSUFFICIENT, DriftConfig, Signal, verdict_of

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

NOVEL_QUANTILE = 0.95  # a question farther from every topic than 95% of the reference is "novel"
EXAMPLES = 5
LABEL_CHARS = 80
SCORE_BINS = 10


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    array = np.asarray(values, dtype=np.float64)
    p10, p50, p90 = np.quantile(array, [0.1, 0.5, 0.9])
    return {
        "n": len(values),
        "mean": _round(array.mean()),
        "p10": _round(p10),
        "median": _round(p50),
        "p90": _round(p90),
    }


def _rate(count: int, n: int, **extra: Any) -> dict[str, Any]:
    return {"n": n, "count": count, "rate": _round(count / n) if n else None, **extra}


def _insufficient(
    name: str,
    config: DriftConfig,
    n_ref: int,
    n_cur: int,
    reference: dict[str, Any],
    current: dict[str, Any],
    what: str,
) -> Signal | None:
    """The ``insufficient_data`` signal when a window is below ``min_samples``; None when both suffice."""
    short = [
        f"{label} has {n} {what}" for label, n in (("reference", n_ref), ("current", n_cur)) if n < config.min_samples
    ]
    if not short:
        return None
    return Signal(
        name=name,
        statistic=None,
        p_value=None,
        threshold=config.threshold(name),
        verdict=INSUFFICIENT,
        reference=reference,
        current=current,
        reason=f"{' and '.join(short)}; at least {config.min_samples} are needed",
    )


def _signal(
    name: str,
    config: DriftConfig,
    statistic: float,
    p_value: float | None,
    reference: dict[str, Any],
    current: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> Signal:
    threshold = config.threshold(name)
    return Signal(
        name=name,
        statistic=_round(statistic, 6),
        p_value=None if p_value is None else float(p_value),
        threshold=threshold,
        verdict=verdict_of(name, statistic, p_value, threshold),
        reference=reference,
        current=current,
        details=details or {},
    )


# -- input ---------------------------------------------------------------------------------------


def embed_windows(
    embed: Embed, reference: Sequence[str], current: Sequence[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Vectors of both windows' questions, each distinct text embedded once (popular questions repeat,
    within a window and across the two)."""
    distinct = list(dict.fromkeys([*reference, *current]))
    vectors = np.asarray(embed(distinct), dtype=np.float64)
    position = {text: i for i, text in enumerate(distinct)}
    return vectors[[position[q] for q in reference]], vectors[[position[q] for q in current]]


def input_signals(ref: WindowData, cur: WindowData, config: DriftConfig, embed: Embed) -> list[Signal]:
    reference, current = {"n": len(ref.questions)}, {"n": len(cur.questions)}
    short = [
        _insufficient(name, config, len(ref.questions), len(cur.questions), reference, current, "questions")
        for name in ("query_mmd", "query_topics")
    ]
    if short[0] is not None and short[1] is not None:
        return [short[0], short[1]]  # both signals need the same questions: never one without the other
    x, y = embed_windows(embed, ref.questions, cur.questions)
    result = stats.mmd_test(x, y, permutations=config.permutations, seed=config.seed, max_samples=config.max_samples)
    mmd = _signal(
        "query_mmd",
        config,
        result.mmd2,
        result.p_value,
        reference,
        current,
        {
            "bandwidth": _round(result.bandwidth, 6),
            "permutations": result.permutations,
            "sampled": {"reference": result.n_reference, "current": result.n_current},
        },
    )
    return [mmd, topic_signal(ref.questions, cur.questions, x, y, config)]


def topic_signal(
    ref_questions: Sequence[str],
    cur_questions: Sequence[str],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    config: DriftConfig,
) -> Signal:
    """PSI over k-means topics of the reference, the share of novel questions and examples of them."""
    k = stats.bin_count(len(x), len(y), config.topics)
    topics = stats.fit_topics(x, k, seed=config.seed)
    labels, distances = stats.assign_topics(y, topics.centroids)
    size = len(topics.centroids)
    ref_counts = np.bincount(topics.labels, minlength=size)
    cur_counts = np.bincount(labels, minlength=size)
    value = stats.psi(ref_counts, cur_counts)
    limit = float(np.quantile(topics.distances, NOVEL_QUANTILE))
    novel = distances > limit
    table: list[dict[str, Any]] = []
    for topic in range(size):
        members = np.flatnonzero(topics.labels == topic)
        central = members[np.argmin(topics.distances[members])]
        table.append(
            {
                "topic": topic,
                "label": " ".join(ref_questions[central].split())[:LABEL_CHARS],
                "reference": _round(ref_counts[topic] / len(x)),
                "current": _round(cur_counts[topic] / len(y)),
            }
        )
    table.sort(key=lambda t: abs(t["current"] - t["reference"]), reverse=True)
    farthest = np.argsort(-distances)[: int(novel.sum())]
    examples = list(dict.fromkeys(" ".join(cur_questions[i].split())[:LABEL_CHARS] for i in farthest))[:EXAMPLES]
    return _signal(
        "query_topics",
        config,
        value,
        None,
        {"n": len(x), "novel_share": _round(float(np.mean(topics.distances > limit)))},
        {"n": len(y), "novel_share": _round(float(novel.mean()))},
        {"topics": table, "novel_examples": examples},
    )


# -- retrieval -----------------------------------------------------------------------------------


def retrieval_signals(ref: WindowData, cur: WindowData, config: DriftConfig, score_field: str) -> list[Signal]:
    out: list[Signal] = []
    reference, current = _summary(ref.top_scores), _summary(cur.top_scores)
    n_ref, n_cur = len(ref.top_scores), len(cur.top_scores)
    short = [
        _insufficient(name, config, n_ref, n_cur, reference, current, "retrievals")
        for name in ("top_score_psi", "top_score_ks")
    ]
    if short[0] is not None and short[1] is not None:
        out += [short[0], short[1]]
    else:
        bins = stats.bin_count(n_ref, n_cur, SCORE_BINS)
        edges = stats.quantile_edges(ref.top_scores, bins)
        ref_counts, cur_counts = stats.histogram(ref.top_scores, edges), stats.histogram(cur.top_scores, edges)
        details = {
            "field": score_field,
            "edges": [_round(e, 6) for e in edges],
            "reference_counts": ref_counts.tolist(),
            "current_counts": cur_counts.tolist(),
        }
        out.append(
            _signal("top_score_psi", config, stats.psi(ref_counts, cur_counts), None, reference, current, details)
        )
        ks = stats.ks_test(ref.top_scores, cur.top_scores)
        out.append(
            _signal("top_score_ks", config, ks.statistic, ks.p_value, reference, current, {"field": score_field})
        )
    out.append(_proportion("refusal_rate", config, ref.refused, ref.answers, cur.refused, cur.answers, "answers"))
    return out


def _proportion(
    name: str, config: DriftConfig, ref_hits: int, ref_n: int, cur_hits: int, cur_n: int, what: str, **extra: Any
) -> Signal:
    reference = _rate(ref_hits, ref_n, **{k: v[0] for k, v in extra.items()})
    current = _rate(cur_hits, cur_n, **{k: v[1] for k, v in extra.items()})
    short = _insufficient(name, config, ref_n, cur_n, reference, current, what)
    if short is not None:
        return short
    test = stats.two_proportion_test(ref_hits, ref_n, cur_hits, cur_n)
    return _signal(name, config, test.statistic, test.p_value, reference, current)


def _distribution(name: str, config: DriftConfig, ref: Sequence[float], cur: Sequence[float], what: str) -> Signal:
    reference, current = _summary(ref), _summary(cur)
    short = _insufficient(name, config, len(ref), len(cur), reference, current, what)
    if short is not None:
        return short
    test = stats.ks_test(ref, cur)
    return _signal(name, config, test.statistic, test.p_value, reference, current)


# -- behaviour -----------------------------------------------------------------------------------


def behaviour_signals(ref: WindowData, cur: WindowData, config: DriftConfig) -> list[Signal]:
    return [
        _distribution(
            "answer_length",
            config,
            [float(w) for w in ref.answer_words],
            [float(w) for w in cur.answer_words],
            "answered questions",
        ),
        _distribution("grounding_supported", config, ref.supported_ratios, cur.supported_ratios, "grounding checks"),
        _proportion(
            "grounding_failure_rate",
            config,
            ref.grounding_failed,
            ref.grounding_checked,
            cur.grounding_failed,
            cur.grounding_checked,
            "grounding checks",
        ),
        _proportion(
            "feedback_down_rate",
            config,
            ref.votes_down,
            ref.votes,
            cur.votes_down,
            cur.votes,
            "votes",
            up=(ref.votes_up, cur.votes_up),
        ),
    ]


__all__ = ["Embed", "behaviour_signals", "embed_windows", "input_signals", "retrieval_signals", "topic_signal"]
