"""Statistics shared by the drift report and the experiment report."""

from __future__ import annotations

import math


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled z-test of ``x1/n1`` against ``x2/n2``: ``(z, two-sided p)``; z > 0 when the first is higher.

    The same p as a 2x2 chi-square without continuity correction; ``erfc`` keeps the tiny p-values
    that ``1 - cdf`` would round to 0.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one observation")
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 0.0, 1.0  # both all-zero or all-one: no evidence of a difference
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return z, min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


__all__ = ["two_proportion_z"]
