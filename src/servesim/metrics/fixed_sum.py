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


def _chunk_sum(a: np.ndarray, b: np.ndarray) -> float:
    """np.sum(a * b); with b all ones (a broadcast 1.0, FixedDot.add's default) the product is a itself."""
    if b.strides == (0,) and len(b) and b[0] == 1.0:
        return float(np.sum(a))
    return float(np.sum(a * b))


class FixedDot:
    """fixed_dot of two arrays that arrive in pieces, in order: the same chunks of the whole, so the same bits,
    without holding the whole arrays. Fed one array (`add(a)`), it is the fixed sum of that array."""

    def __init__(self) -> None:
        self._sums: list[float] = []
        self._held: tuple[np.ndarray, np.ndarray] | None = None  # the start of a chunk still being filled

    def add(self, a: np.ndarray, b: np.ndarray | None = None) -> None:
        if b is None:
            b = np.broadcast_to(1.0, a.shape)  # a * 1.0 is a, bit for bit: _chunk_sum skips the product
        if len(a) != len(b):
            raise ValueError(f"FixedDot.add: lengths differ ({len(a)} and {len(b)})")
        start = 0
        if self._held is not None:
            held_a, held_b = self._held
            start = min(len(a), CHUNK - len(held_a))
            a0, b0 = np.concatenate([held_a, a[:start]]), np.concatenate([held_b, b[:start]])
            self._held = None
            if len(a0) < CHUNK:
                self._held = (a0, b0)
                return
            self._sums.append(_chunk_sum(a0, b0))
        full = start + (len(a) - start) // CHUNK * CHUNK
        self._sums.extend(_chunk_sum(a[i:i + CHUNK], b[i:i + CHUNK]) for i in range(start, full, CHUNK))
        if full < len(a):
            self._held = (np.array(a[full:]), np.array(b[full:]))  # copies: the caller may reuse its buffers

    def value(self) -> float:
        if self._held is not None:
            self._sums.append(_chunk_sum(*self._held))
            self._held = None
        return math.fsum(self._sums)
