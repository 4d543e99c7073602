"""The report's statistics against published values and SciPy (the reference implementation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cairn.ops.experiments import stats
from cairn.ops.stats import two_proportion_z

scipy_stats = pytest.importorskip("scipy.stats")  # installed with pytrec-eval-terrier


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3.
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_interval_matches_newcombe(successes: int, n: int, expected: tuple[float, float]) -> None:
    low, high = stats.wilson(successes, n)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_is_closed_at_the_edges_and_refuses_nonsense() -> None:
    assert stats.wilson(10, 10)[1] == 1.0 and stats.wilson(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        stats.wilson(3, 0)
    with pytest.raises(ValueError):
        stats.wilson(5, 4)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(30, 100, 45, 110), (120, 1000, 90, 1000), (3, 40, 9, 35)])
def test_two_proportion_z_equals_the_uncorrected_chi_square(x1: int, n1: int, x2: int, n2: int) -> None:
    z, p = two_proportion_z(x1, n1, x2, n2)
    chi2 = scipy_stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert z * z == pytest.approx(chi2.statistic, rel=1e-9)
    assert p == pytest.approx(chi2.pvalue, rel=1e-9)
    assert (z > 0) == (x1 / n1 > x2 / n2)


def test_two_proportion_z_without_variance_finds_no_difference() -> None:
    assert two_proportion_z(0, 50, 0, 70) == (0.0, 1.0)
    assert two_proportion_z(50, 50, 70, 70) == (0.0, 1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mann_whitney_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.lognormal(5.0, 0.6, 180).round(-1)  # rounded: many ties, like millisecond latencies
    b = rng.lognormal(5.15, 0.6, 140).round(-1)
    u, p = stats.mann_whitney(a, b)
    reference = scipy_stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True)
    assert u == pytest.approx(reference.statistic)
    assert p == pytest.approx(reference.pvalue, rel=1e-9)


def test_mann_whitney_of_identical_samples_is_not_significant() -> None:
    assert stats.mann_whitney([5.0] * 10, [5.0] * 12)[1] == 1.0


def test_sample_ratio_check_matches_scipy_chisquare() -> None:
    counts, weights = [480, 520, 1060], [1.0, 1.0, 2.0]
    expected = [w / sum(weights) * sum(counts) for w in weights]
    assert stats.sample_ratio_p(counts, weights) == pytest.approx(scipy_stats.chisquare(counts, expected).pvalue)
    assert stats.sample_ratio_p([5000, 4000], [1, 1]) < 1e-6


def test_bootstrap_interval_of_the_median_covers_it_and_is_reproducible() -> None:
    rng = np.random.default_rng(7)
    sample = rng.lognormal(6.0, 0.5, 400)
    low, high = stats.bootstrap_ci(sample)
    assert low < float(np.median(sample)) < high
    assert (low, high) == stats.bootstrap_ci(sample), "a fixed seed: the same report twice"
    reference = scipy_stats.bootstrap(
        (sample,), np.median, confidence_level=0.95, n_resamples=2000, method="percentile", random_state=3
    ).confidence_interval
    # Different resamples, same target: the ends agree to within the Monte Carlo noise.
    assert low == pytest.approx(reference.low, rel=0.03) and high == pytest.approx(reference.high, rel=0.03)


def test_paired_bootstrap_is_the_interval_of_the_mean_difference() -> None:
    differences = [0.1, 0.2, -0.05, 0.15, 0.0, 0.3, 0.05, 0.1] * 10
    low, high = stats.paired_bootstrap(differences)
    assert low < float(np.mean(differences)) < high
    assert low > 0


def test_sign_flip_test_is_exact_for_few_pairs() -> None:
    # All 5 differences positive: only the all-plus and all-minus patterns are as extreme, p = 2/32.
    assert stats.sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 32)
    assert stats.sign_flip_test([0.0, 0.0, 0.0]) == 1.0


def test_sign_flip_test_agrees_with_scipy_permutation_test() -> None:
    rng = np.random.default_rng(11)
    differences = rng.normal(0.04, 0.2, 60)
    p = stats.sign_flip_test(differences, resamples=20_000)
    reference = scipy_stats.permutation_test(
        (differences,),
        np.mean,
        permutation_type="samples",
        n_resamples=20_000,
        alternative="two-sided",
        random_state=5,
    ).pvalue
    assert p == pytest.approx(reference, abs=0.02)


def test_z_of_confidence() -> None:
    assert stats.z_of(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert math.isclose(stats.percentile([1.0, 2.0, 3.0, 4.0], 50), 2.5)
