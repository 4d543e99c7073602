"""The two-sample statistics of drift detection: MMD, PSI, KS and a two-proportion test.

Every function compares a reference sample with a current one and is deterministic for a seed.

MMD
    The maximum mean discrepancy (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012) between
    two sets of vectors, with a Gaussian (RBF) kernel ``exp(-||x - y||² / (2 σ²))`` whose bandwidth
    ``σ`` is the median distance between pooled points (the "median heuristic"). The unbiased
    estimate of MMD² (their eq. 3) is near zero, and may be slightly negative, when both samples
    come from one distribution. Its p-value comes from a permutation test: the pooled points are
    split at random ``permutations`` times and the p-value is the share of splits whose MMD² is at
    least the observed one, ``(1 + #{≥}) / (1 + permutations)``. All splits are computed from one
    kernel matrix as matrix products, so a test costs one ``N × N × permutations`` product.
PSI
    The population stability index over bins, ``Σ (c_i − r_i) · ln(c_i / r_i)`` over the shares
    ``r_i`` (reference) and ``c_i`` (current); an empty bin counts as a share of ``PSI_FLOOR`` so the
    logarithm stays finite. Sampling noise alone gives a PSI of about
    ``(bins − 1) · (1/n_ref + 1/n_cur)`` (it is a chi-square in disguise), so :func:`bin_count`
    picks fewer bins for small samples.
KS
    The two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``): the largest gap ``D`` between
    the two empirical distribution functions, exact p-values for small samples.
Two proportions
    The pooled two-proportion z-test; its p-value equals that of a chi-square test of the 2×2 table
    without continuity correction.

scipy is imported inside the functions that need it: importing cairn stays cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cairn.errors import InputError
from cairn.ops.stats import two_proportion_z

PSI_FLOOR = 1e-4
# Bins per sample size: each bin holds about this many points of the smaller sample at least, which
# keeps the PSI of two samples of one distribution near a quarter of the default threshold (0.2).
POINTS_PER_BIN = 40
_PERMUTATION_BATCH = 64

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TestResult:
    """A statistic and its two-sided p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True, slots=True)
class MMDResult:
    """The unbiased MMD² estimate, its permutation p-value, the kernel bandwidth and the samples used."""

    mmd2: float
    p_value: float
    bandwidth: float
    permutations: int
    n_reference: int
    n_current: int


def _matrix(vectors: npt.ArrayLike, name: str) -> Matrix:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"the {name} sample must be a 2-d array of vectors, not of shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"the {name} sample holds NaN or infinite values")
    return array


def squared_distances(points: Matrix) -> Matrix:
    """Pairwise squared Euclidean distances, exactly 0 on the diagonal."""
    norms = np.einsum("ij,ij->i", points, points)
    d2: Matrix = norms[:, None] + norms[None, :] - 2.0 * (points @ points.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def median_bandwidth(d2: Matrix) -> float:
    """The median distance between pooled points, pairs of equal points left out (1.0 when all are equal).

    Audited questions repeat (popular questions, retries): counting their zero distances would
    shrink the bandwidth towards zero, where the kernel sees every other pair as unrelated.
    """
    upper = d2[np.triu_indices_from(d2, k=1)]
    positive = upper[upper > 0]
    if positive.size == 0:
        return 1.0
    return float(np.median(np.sqrt(positive)))


def rbf_kernel(d2: Matrix, bandwidth: float) -> Matrix:
    kernel: Matrix = np.exp(-d2 / (2.0 * bandwidth * bandwidth))
    return kernel


def _mmd2_from_sums(xx: Matrix, xr: Matrix, total: float, m: int, n: int) -> Matrix:
    """Unbiased MMD² of each split from ``xx = 1ₓᵀ K 1ₓ`` and ``xr = 1ₓᵀ K 1``; K's diagonal is 1.

    With ``y = 1 − x``: ``1ₓᵀ K 1ᵧ = xr − xx`` and ``1ᵧᵀ K 1ᵧ = total − 2 xr + xx``; the unbiased
    estimate leaves out the ``m`` (and ``n``) diagonal terms of the within-sample sums.
    """
    xy = xr - xx
    yy = total - 2.0 * xr + xx
    result: Matrix = (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)
    return result


def mmd2_unbiased(reference: npt.ArrayLike, current: npt.ArrayLike, bandwidth: float | None = None) -> float:
    """The unbiased MMD² estimate with an RBF kernel (median-heuristic bandwidth unless given)."""
    x, y = _matrix(reference, "reference"), _matrix(current, "current")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise InputError("MMD needs at least two points in each sample")
    d2 = squared_distances(np.vstack([x, y]))
    kernel = rbf_kernel(d2, median_bandwidth(d2) if bandwidth is None else bandwidth)
    rows = kernel.sum(axis=1)
    xx = kernel[:m, :m].sum()
    return float(_mmd2_from_sums(np.array([xx]), np.array([rows[:m].sum()]), float(rows.sum()), m, n)[0])


def mmd_test(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    permutations: int = 500,
    seed: int = 0,
    max_samples: int | None = None,
) -> MMDResult:
    """MMD² between the samples with a permutation p-value (see the module docstring).

    ``max_samples`` caps each sample by a seeded random subset: the kernel matrix grows with the
    square of the pooled size, and a thousand points per window already detect small shifts.
    """
    if permutations < 1:
        raise InputError(f"permutations must be at least 1, not {permutations}")
    rng = np.random.default_rng(seed)
    x, y = _matrix(reference, "reference"), _matrix(current, "current")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"the samples have different dimensions: {x.shape[1]} and {y.shape[1]}")
    if max_samples is not None:
        if len(x) > max_samples:
            x = x[np.sort(rng.choice(len(x), max_samples, replace=False))]
        if len(y) > max_samples:
            y = y[np.sort(rng.choice(len(y), max_samples, replace=False))]
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise InputError("MMD needs at least two points in each sample")
    d2 = squared_distances(np.vstack([x, y]))
    bandwidth = median_bandwidth(d2)
    kernel = rbf_kernel(d2, bandwidth)
    del d2
    rows = kernel.sum(axis=1)
    total = float(rows.sum())
    observed = float(_mmd2_from_sums(np.array([kernel[:m, :m].sum()]), np.array([rows[:m].sum()]), total, m, n)[0])
    size = m + n
    at_least = 0
    done = 0
    while done < permutations:
        batch = min(_PERMUTATION_BATCH, permutations - done)
        members = np.zeros((size, batch))
        for column in range(batch):
            members[rng.permutation(size)[:m], column] = 1.0
        xx = np.einsum("ib,ib->b", members, kernel @ members)
        stats = _mmd2_from_sums(xx, rows @ members, total, m, n)
        # A split that reproduces the observed one must count as "at least" despite rounding.
        at_least += int(np.count_nonzero(stats >= observed - 1e-12 * max(1.0, abs(observed))))
        done += batch
    return MMDResult(
        mmd2=observed,
        p_value=(1 + at_least) / (1 + permutations),
        bandwidth=bandwidth,
        permutations=permutations,
        n_reference=m,
        n_current=n,
    )


def shares(counts: Sequence[int] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    if total <= 0:
        raise InputError("a PSI sample is empty")
    result: npt.NDArray[np.float64] = array / total
    return result


def psi(reference_counts: Sequence[int] | npt.ArrayLike, current_counts: Sequence[int] | npt.ArrayLike) -> float:
    """Population stability index of two histograms over the same bins (counts, not shares)."""
    r, c = shares(reference_counts), shares(current_counts)
    if r.shape != c.shape:
        raise InputError(f"PSI needs the same bins on both sides, got {r.shape[0]} and {c.shape[0]}")
    r, c = np.maximum(r, PSI_FLOOR), np.maximum(c, PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def bin_count(n_reference: int, n_current: int, most: int) -> int:
    """How many bins (or topics) samples this size support: 2 at least, ``most`` at most."""
    return max(2, min(most, 1 + min(n_reference, n_current) // POINTS_PER_BIN))


def quantile_edges(reference: Sequence[float] | npt.ArrayLike, bins: int) -> npt.NDArray[np.float64]:
    """Inner bin edges at the reference's quantiles; ties (e.g. many scores of 1.0) merge bins."""
    values = np.asarray(reference, dtype=np.float64)
    if values.size == 0:
        raise InputError("quantile bins need a non-empty reference sample")
    edges: npt.NDArray[np.float64] = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return edges


def histogram(values: Sequence[float] | npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Counts per bin: bin ``i`` holds ``edges[i-1] <= v < edges[i]`` (the last is open above)."""
    index = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right")
    counts: npt.NDArray[np.int64] = np.bincount(index, minlength=len(edges) + 1).astype(np.int64)
    return counts


def ks_test(reference: Sequence[float] | npt.ArrayLike, current: Sequence[float] | npt.ArrayLike) -> TestResult:
    """Two-sample Kolmogorov-Smirnov: ``D`` and its two-sided p-value."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise InputError("the KS test needs non-empty samples")
    result = ks_2samp(a, b)
    return TestResult(float(result.statistic), float(result.pvalue))


def two_proportion_test(reference_hits: int, reference_n: int, current_hits: int, current_n: int) -> TestResult:
    """Pooled z-test of two proportions; the statistic is the difference ``current − reference``."""
    for hits, n in ((reference_hits, reference_n), (current_hits, current_n)):
        if n <= 0 or not 0 <= hits <= n:
            raise InputError(f"a proportion needs 0 <= hits <= n and n > 0, got {hits} of {n}")
    _, p = two_proportion_z(current_hits, current_n, reference_hits, reference_n)
    return TestResult(current_hits / current_n - reference_hits / reference_n, p)


@dataclass(frozen=True, slots=True)
class Topics:
    """k-means centroids fitted on the reference vectors and the reference's own assignment."""

    centroids: Matrix
    labels: npt.NDArray[np.int64]
    distances: npt.NDArray[np.float64]  # of each reference vector to its centroid


def fit_topics(reference: npt.ArrayLike, k: int, *, seed: int = 0) -> Topics:
    """k-means (k-means++ seeding) on the reference; clusters left empty are dropped."""
    from scipy.cluster.vq import kmeans2

    x = _matrix(reference, "reference")
    if not 1 <= k <= len(x):
        raise InputError(f"cannot fit {k} topics on {len(x)} vectors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "one of the clusters is empty": handled below
        centroids, _ = kmeans2(x, k, iter=50, minit="++", seed=np.random.default_rng(seed))
    labels, distances = assign_topics(x, centroids)
    used = np.unique(labels)
    if len(used) < len(centroids):
        centroids = centroids[used]
        labels, distances = assign_topics(x, centroids)
    return Topics(np.asarray(centroids, dtype=np.float64), labels, distances)


def assign_topics(vectors: npt.ArrayLike, centroids: Matrix) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The nearest centroid of each vector and the distance to it."""
    x = _matrix(vectors, "current")
    d2 = (
        np.einsum("ij,ij->i", x, x)[:, None]
        + np.einsum("ij,ij->i", centroids, centroids)[None, :]
        - 2.0 * (x @ centroids.T)
    )
    labels = np.argmin(d2, axis=1).astype(np.int64)
    nearest = np.sqrt(np.maximum(d2[np.arange(len(x)), labels], 0.0))
    return labels, nearest


__all__ = [
    "PSI_FLOOR",
    "MMDResult",
    "TestResult",
    "Topics",
    "assign_topics",
    "bin_count",
    "fit_topics",
    "histogram",
    "ks_test",
    "median_bandwidth",
    "mmd2_unbiased",
    "mmd_test",
    "psi",
    "quantile_edges",
    "two_proportion_test",
]
