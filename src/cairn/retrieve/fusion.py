"""Fusing ranked lists from different retrievers.

Two methods, both measured in docs/retrieval.md: reciprocal rank fusion (rank-only, robust, no
tuning) and a convex combination of min-max normalised scores (uses score gaps, one weight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Ranked = Sequence[tuple[int, float]]


def rrf(lists: Mapping[str, Ranked], *, k: int = 60, weights: Mapping[str, float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion (Cormack et al. 2009): sum of w / (k + rank)."""
    fused: dict[int, float] = {}
    for name, ranked in lists.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, (item, _) in enumerate(ranked, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def min_max(ranked: Ranked) -> dict[int, float]:
    """Scale a list's scores to [0, 1]; a list whose scores are all equal maps to 1."""
    if not ranked:
        return {}
    scores = [s for _, s in ranked]
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return {item: 1.0 for item, _ in ranked}
    return {item: (s - lo) / (hi - lo) for item, s in ranked}


def convex(lists: Mapping[str, Ranked], weights: Mapping[str, float]) -> dict[int, float]:
    """Weighted sum of min-max normalised scores; an item absent from a list gets 0 from it."""
    fused: dict[int, float] = {}
    for name, ranked in lists.items():
        weight = weights.get(name, 0.0)
        for item, score in min_max(ranked).items():
            fused[item] = fused.get(item, 0.0) + weight * score
    return fused


def ranked(scores: Mapping[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
