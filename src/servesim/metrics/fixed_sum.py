"""A dot product whose bits do not depend on the machine it runs on.

np.dot hands float64 vectors to BLAS, whose summation order depends on its thread count and CPU kernels: the
same simulation wrote different last digits into summary.json with OPENBLAS_NUM_THREADS=1 and =2. Here the
products are summed by numpy's own pairwise summation over fixed chunks of the array, and the chunk sums by
math.fsum (exactly rounded), so the result depends only on the two arrays.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 1 << 16  # bounds the temporary product array


def fixed_dot(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) != len(b):
        raise ValueError(f"fixed_dot: lengths differ ({len(a)} and {len(b)})")
    return math.fsum(float(np.sum(a[i:i + CHUNK] * b[i:i + CHUNK])) for i in range(0, len(a), CHUNK))
