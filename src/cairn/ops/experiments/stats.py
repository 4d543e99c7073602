"""The statistics of an experiment report. The choices:

* proportions (feedback, up-vote, refusal, grounding failure rates): Wilson score interval, which
  keeps its coverage near 0 and 1 and for small n, where the Wald interval does not (Newcombe 1998);
  a pooled two-proportion z-test against the control (the same p as a 2x2 chi-square without
  continuity correction);
* latency: percentile-bootstrap interval for the median, and the Mann-Whitney U test (SciPy's, normal
  approximation with tie and continuity corrections) because latencies are skewed and a t-test on
  them is not;
* offline comparisons (per-query scores of two variants on the same queries): paired bootstrap
  interval of the mean difference and a paired randomization (sign-flip) test, the test that
  Smucker, Allan and Carterette (CIKM 2007) recommend for IR evaluation.

Resampling uses a fixed seed, so a report printed twice shows the same intervals. ``scipy.stats``
is imported inside the functions that need it: it costs about half a second, which a command that
never reports should not pay.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

SEED = 20260
RESAMPLES = 2000
_NORMAL = NormalDist()
_CHUNK_CELLS = 4_000_000  # resample matrices are built in slices of about this many values


def z_of(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n``."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = z_of(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of ``a`` against ``b``: ``(U of a, two-sided p)``, normal approximation."""
    from scipy.stats import mannwhitneyu

    if len(a) == 0 or len(b) == 0:
        raise ValueError("both samples need at least one observation")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if np.all(x == x[0]) and np.all(y == x[0]):
        return len(x) * len(y) / 2.0, 1.0  # one value everywhere: no difference (SciPy would give nan)
    result = mannwhitneyu(x, y, method="asymptotic", use_continuity=True, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _resampled(
    values: NDArray[np.float64], statistic: Callable[..., NDArray[np.float64]], resamples: int, seed: int
) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    n = len(values)
    step = max(1, _CHUNK_CELLS // max(1, n))
    out = []
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        picks = rng.integers(0, n, size=(rows, n))
        out.append(statistic(values[picks], axis=1))
    return np.concatenate(out)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[..., NDArray[np.float64]] = np.median,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (numpy-style, with an ``axis`` argument)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        raise ValueError("cannot bootstrap an empty sample")
    stats = _resampled(data, statistic, resamples, seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_bootstrap(
    differences: Sequence[float], confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """Interval of the mean of per-query differences, resampling queries (so pairs stay together)."""
    return bootstrap_ci(differences, np.mean, confidence, resamples, seed)


def sign_flip_test(differences: Sequence[float], resamples: int = 10_000, seed: int = SEED) -> float:
    """Two-sided p of a paired randomization test: under H0 each difference's sign is a coin flip.

    Exact (every sign pattern) up to 16 pairs, Monte Carlo beyond, with the +1 correction that keeps
    a Monte Carlo p-value valid.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0:
        raise ValueError("no pairs to test")
    observed = abs(float(d.mean()))
    if observed == 0.0:
        return 1.0
    tolerance = 1e-12 * max(1.0, observed)
    if n <= 16:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        means = np.abs((patterns * d).mean(axis=1))
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_CELLS // n)
    extreme = 0
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, n))
        extreme += int(np.sum(np.abs((signs * d).mean(axis=1)) >= observed - tolerance))
    return (extreme + 1) / (resamples + 1)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def sample_ratio_p(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness of fit of the observed split against the configured weights.

    A small p (a *sample ratio mismatch*) means assignment or logging is broken, and the other
    figures of the report cannot be trusted, whatever they say.
    """
    total = sum(counts)
    if total == 0 or len(counts) != len(weights) or len(counts) < 2:
        raise ValueError("need observed counts for at least two variants and as many weights")
    from scipy.stats import chisquare

    scale = total / sum(weights)
    return float(chisquare(counts, [w * scale for w in weights]).pvalue)


def significant_digits(value: float, digits: int = 4) -> float:
    """A p-value for display: 4 significant digits, so a tiny one is not rounded to 0."""
    return float(f"{value:.{digits}g}")
