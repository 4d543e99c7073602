"""Maximal marginal relevance (Carbonell & Goldstein 1998): trade relevance for diversity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def mmr_order(
    relevance: Sequence[float],
    vectors: npt.NDArray[np.float32],
    k: int,
    *,
    lam: float = 0.7,
) -> list[int]:
    """Indices of up to ``k`` items picked greedily by ``lam * rel - (1 - lam) * max_sim_to_picked``.

    ``relevance`` is expected in [0, 1] (e.g. a min-max normalised fused score); vectors are unit length.
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        gain = lam * rel - (1.0 - lam) * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, sims[best])
    return picked
