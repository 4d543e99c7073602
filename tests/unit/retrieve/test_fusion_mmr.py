from __future__ import annotations

import numpy as np

from cairn.retrieve.fusion import convex, min_max, ranked, rrf
from cairn.retrieve.mmr import mmr_order


def test_rrf_matches_formula() -> None:
    fused = rrf({"a": [(1, 9.0), (2, 5.0)], "b": [(2, 0.9), (3, 0.1)]}, k=60)
    assert fused[1] == 1 / 61
    assert fused[2] == 1 / 62 + 1 / 61
    assert fused[3] == 1 / 62
    assert [i for i, _ in ranked(fused)] == [2, 1, 3]


def test_min_max_and_convex() -> None:
    assert min_max([(1, 10.0), (2, 5.0), (3, 0.0)]) == {1: 1.0, 2: 0.5, 3: 0.0}
    assert min_max([(1, 3.0), (2, 3.0)]) == {1: 1.0, 2: 1.0}
    assert min_max([]) == {}
    fused = convex({"bm25": [(1, 10.0), (2, 0.0)], "dense": [(2, 0.9), (3, 0.1)]}, {"bm25": 0.3, "dense": 0.7})
    assert fused == {1: 0.3, 2: 0.7, 3: 0.0}


def test_mmr_prefers_diverse_items() -> None:
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    # Items 0 and 1 are duplicates; with diversity the second pick is the orthogonal item 2.
    assert mmr_order([1.0, 0.95, 0.6], vectors, 2, lam=0.5) == [0, 2]
    # Relevance only (lambda = 1) keeps the duplicate.
    assert mmr_order([1.0, 0.95, 0.6], vectors, 2, lam=1.0) == [0, 1]
    assert mmr_order([], np.zeros((0, 2), dtype=np.float32), 3) == []
