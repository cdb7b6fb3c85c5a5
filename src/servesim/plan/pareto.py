"""Pareto frontiers over evaluated points: the points no other point beats on both axes."""

from __future__ import annotations

from typing import Sequence


def frontier(xs: Sequence[float], ys: Sequence[float], minimize_x: bool = True, minimize_y: bool = True) -> list[int]:
    """Indices of the non-dominated points, ordered by x (best first). Points with a missing value are skipped;
    of exact duplicates the first is kept."""
    sx, sy = (1 if minimize_x else -1), (1 if minimize_y else -1)
    items = [(sx * x, sy * y, i) for i, (x, y) in enumerate(zip(xs, ys)) if x is not None and y is not None]
    items.sort()
    out, best_y = [], float("inf")
    for x, y, i in items:
        if y < best_y:
            out.append(i)
            best_y = y
    return out
