"""The drift statistics against their definitions, scipy, and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import chi2_contingency, ks_2samp

from cairn.errors import InputError
from cairn.ops.drift import stats


def _blobs(seed: int, n: int, dim: int = 16, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def _mmd2_by_definition(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al. (2012), eq. 3, written as the three double sums."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma * sigma))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_its_definition() -> None:
    x, y = _blobs(1, 9, dim=5), _blobs(2, 7, dim=5, shift=0.3)
    assert stats.mmd2_unbiased(x, y, bandwidth=1.7) == pytest.approx(_mmd2_by_definition(x, y, 1.7), rel=1e-10)
    pooled = np.vstack([x, y])
    sigma = float(np.median(pdist(pooled)))
    assert stats.median_bandwidth(stats.squared_distances(pooled)) == pytest.approx(sigma, rel=1e-10)
    assert stats.mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_definition(x, y, sigma), rel=1e-10)
    result = stats.mmd_test(x, y, permutations=50)
    assert result.mmd2 == pytest.approx(_mmd2_by_definition(x, y, sigma), rel=1e-10)
    assert result.bandwidth == pytest.approx(sigma, rel=1e-10)


def test_identical_samples_have_mmd_near_zero_and_a_large_p_value() -> None:
    x = _blobs(3, 120)
    result = stats.mmd_test(x, x.copy(), permutations=300, seed=1)
    # The unbiased estimate of two copies is -2(1 - mean off-diagonal kernel)/(m - 1): zero as m grows.
    assert -2 / (len(x) - 1) <= result.mmd2 <= 0
    assert result.p_value > 0.5


def test_same_distribution_is_not_significant() -> None:
    result = stats.mmd_test(_blobs(4, 150), _blobs(5, 150), permutations=300, seed=0)
    assert abs(result.mmd2) < 0.01
    assert result.p_value > 0.05


def test_a_shift_is_detected() -> None:
    result = stats.mmd_test(_blobs(6, 150), _blobs(7, 150, shift=0.4), permutations=300, seed=0)
    assert result.mmd2 > 0.01
    assert result.p_value == pytest.approx(1 / 301), "no permutation reaches the observed MMD²"


def test_the_permutation_test_is_seeded() -> None:
    x, y = _blobs(8, 60), _blobs(9, 60, shift=0.05)
    first = stats.mmd_test(x, y, permutations=200, seed=42)
    assert stats.mmd_test(x, y, permutations=200, seed=42) == first
    others = {stats.mmd_test(x, y, permutations=200, seed=s).p_value for s in range(5)}
    assert len(others) > 1, "the seed drives the permutations"
    assert all(1 / 201 <= p <= 1 for p in others)


def test_max_samples_draws_a_seeded_subset() -> None:
    x, y = _blobs(10, 300), _blobs(11, 250)
    result = stats.mmd_test(x, y, permutations=50, seed=3, max_samples=100)
    assert (result.n_reference, result.n_current) == (100, 100)
    assert stats.mmd_test(x, y, permutations=50, seed=3, max_samples=100) == result


def test_mmd_refuses_bad_samples() -> None:
    with pytest.raises(InputError, match="at least two"):
        stats.mmd_test(_blobs(1, 1), _blobs(2, 5))
    with pytest.raises(InputError, match="different dimensions"):
        stats.mmd_test(_blobs(1, 5, dim=3), _blobs(2, 5, dim=4))
    with pytest.raises(InputError, match="NaN"):
        stats.mmd_test(np.full((3, 2), np.nan), _blobs(2, 5, dim=2))


def test_psi_by_hand() -> None:
    # shares .5/.3/.2 against .3/.3/.4: (.3-.5)·ln(.3/.5) + 0 + (.4-.2)·ln(.4/.2)
    expected = -0.2 * math.log(0.6) + 0.2 * math.log(2.0)
    assert stats.psi([50, 30, 20], [30, 30, 40]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2408, abs=1e-4)
    assert stats.psi([50, 30, 20], [30, 30, 40]) == pytest.approx(stats.psi([30, 30, 40], [50, 30, 20]))
    assert stats.psi([5, 3, 2], [50, 30, 20]) == pytest.approx(0.0)


def test_psi_floors_empty_bins() -> None:
    floor = stats.PSI_FLOOR
    expected = (floor - 0.5) * math.log(floor / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert stats.psi([10, 10], [0, 20]) == pytest.approx(expected)
    with pytest.raises(InputError, match="same bins"):
        stats.psi([1, 2], [1, 2, 3])
    with pytest.raises(InputError, match="empty"):
        stats.psi([0, 0], [1, 1])


def test_psi_of_one_distribution_stays_under_the_threshold() -> None:
    """The bin count keeps sampling noise near (bins - 1)(1/n + 1/n), well below 0.2."""
    values = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        ref, cur = rng.beta(2, 5, 200), rng.beta(2, 5, 200)
        edges = stats.quantile_edges(ref, stats.bin_count(200, 200, 10))
        values.append(stats.psi(stats.histogram(ref, edges), stats.histogram(cur, edges)))
    assert max(values) < 0.2
    assert np.mean(values) == pytest.approx(5 * (2 / 200), rel=0.5)


def test_bins_follow_the_sample_size() -> None:
    assert stats.bin_count(50, 1000, 10) == 2
    assert stats.bin_count(200, 300, 10) == 6
    assert stats.bin_count(5000, 5000, 10) == 10
    assert stats.bin_count(10, 10, 8) == 2


def test_quantile_bins_merge_ties_and_cover_everything() -> None:
    edges = stats.quantile_edges([1.0] * 8 + [0.2, 0.4], 5)
    assert len(edges) < 4, "tied quantiles merge"
    counts = stats.histogram([0.0, 0.3, 1.0, 5.0], edges)
    assert counts.sum() == 4 and len(counts) == len(edges) + 1


def test_ks_matches_scipy_and_a_hand_value() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=80), rng.normal(0.5, size=90)
    expected = ks_2samp(a, b)
    result = stats.ks_test(a, b)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert stats.ks_test([1, 2, 3], [4, 5, 6]).statistic == 1.0


@pytest.mark.parametrize(("a", "n1", "b", "n2"), [(10, 100, 20, 100), (30, 250, 31, 240), (5, 60, 40, 70)])
def test_two_proportions_equal_the_chi_square_test(a: int, n1: int, b: int, n2: int) -> None:
    _, p, _, _ = chi2_contingency([[a, n1 - a], [b, n2 - b]], correction=False)
    result = stats.two_proportion_test(a, n1, b, n2)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.statistic == pytest.approx(b / n2 - a / n1)


def test_two_proportions_edge_cases() -> None:
    assert stats.two_proportion_test(0, 50, 0, 60).p_value == 1.0
    assert stats.two_proportion_test(50, 50, 60, 60).p_value == 1.0
    with pytest.raises(InputError):
        stats.two_proportion_test(5, 0, 1, 10)
    with pytest.raises(InputError):
        stats.two_proportion_test(11, 10, 1, 10)


def test_topics_find_separated_clusters_deterministically() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 10
    points = np.vstack([c + rng.normal(size=(40, 8)) for c in centres])
    topics = stats.fit_topics(points, 3, seed=1)
    assert sorted(np.bincount(topics.labels).tolist()) == [40, 40, 40]
    for block in range(3):
        assert len(set(topics.labels[block * 40 : (block + 1) * 40].tolist())) == 1
    again = stats.fit_topics(points, 3, seed=1)
    assert np.array_equal(again.centroids, topics.centroids)
    labels, distances = stats.assign_topics(centres, topics.centroids)
    assert sorted(labels.tolist()) == [0, 1, 2] and distances.max() < 1.0
    with pytest.raises(InputError):
        stats.fit_topics(points[:2], 3)
