"""Exact sums of float64 values, kept as integers so that they merge bitwise-exactly.

Every finite float64 is an integer multiple of 2**-1074, so a sum of them is an integer number
of 2**-SUM_SHIFT units; adding such integers is exact and associative, which makes a statistic
built from them the same however its values were split into parts (corpus shards, chunks).
"""

from __future__ import annotations

import numpy as np

SUM_SHIFT = 1074 + 53
"""Exact sums count units of 2**-SUM_SHIFT: a float64's 53-bit mantissa times 2**e for
e >= -1074 - 53 is then a non-negative shift of an integer."""


def exact_sum(values: np.ndarray) -> int:
    """The exact sum of finite float64 ``values``, as an integer number of 2**-SUM_SHIFT.

    Each value is m · 2**e with an integer mantissa |m| < 2**53 (``np.frexp``); the mantissas
    are split into 26-bit halves, summed per exponent in int64 (exact for up to 2**36
    values), and shifted into one Python integer."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return 0
    fraction, exponent = np.frexp(values)
    mantissa = np.ldexp(fraction, 53).astype(np.int64)  # exact: |fraction| < 1, 53 bits
    high, low = mantissa >> 26, mantissa & ((1 << 26) - 1)  # mantissa = high * 2**26 + low
    order = np.argsort(exponent, kind="stable")
    exponent = exponent[order]
    starts = np.flatnonzero(np.r_[True, exponent[1:] != exponent[:-1]])
    high_sums = np.add.reduceat(high[order], starts)
    low_sums = np.add.reduceat(low[order], starts)
    total = 0
    for e, h, lo in zip(
        exponent[starts].tolist(), high_sums.tolist(), low_sums.tolist(), strict=True
    ):
        total += ((h << 26) + lo) << (e - 53 + SUM_SHIFT)
    return total


def exact_value(total: int, count: int = 1) -> float:
    """An exact sum (``exact_sum``'s units) divided by ``count``, correctly rounded."""
    return total / (count << SUM_SHIFT)
