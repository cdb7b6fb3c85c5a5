"""Reductions that keep plots small whatever the run's size: CDF points, time windows, step buckets.

A 20,000-request run has millions of token times and a hundred thousand steps; a browser draws a few
hundred points per curve just as well. Every function here returns at most a fixed number of points.
"""

from __future__ import annotations

import math

import numpy as np

CDF_POINTS = 400
TIME_WINDOWS = 200
STEP_POINTS = 1500


def cdf(values: np.ndarray, max_points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, fraction <= x). Exact below max_points values; above, quantiles denser in the tail (p99, p99.9)."""
    values = np.sort(values[~np.isnan(values)])
    n = len(values)
    if n <= max_points:
        return values, np.arange(1, n + 1) / max(n, 1)
    body = np.linspace(0.0, 0.9, max_points // 2, endpoint=False)
    tail = 1.0 - np.geomspace(0.1, 1.0 / n, max_points - len(body) - 1)
    q = np.concatenate([body, tail, [1.0]])
    # the value at rank ceil(q*n) has exactly that fraction at or below it: no interpolation to explain
    idx = np.clip(np.ceil(q * n).astype(np.int64) - 1, 0, n - 1)
    return values[idx], (idx + 1) / n


def nice_width(span: float, windows: int = TIME_WINDOWS) -> float:
    """A window length of 1, 2 or 5 times a power of ten giving at most `windows` windows over `span`."""
    raw = max(span, 1e-9) / windows
    base = 10.0 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * base >= raw:
            return mult * base
    return 10 * base


def windows(t0: float, t1: float, max_windows: int = TIME_WINDOWS) -> tuple[np.ndarray, float]:
    """Edges of windows of a nice width covering [t0, t1], and that width.

    The last window ends at t1, not at a round number past it, so a rate in it is not diluted by time after
    the run; a stub shorter than half a window joins the one before it.
    """
    t1 = max(t1, t0 + 1e-6)
    width = nice_width(t1 - t0, max_windows)
    start = math.floor(t0 / width) * width
    if start > t0:  # floor(1.9 / 0.02) * 0.02 is 1.9000000000000001
        start -= width
    edges = start + width * np.arange(max(1, math.floor((t1 - start) / width)) + 1)
    if t1 - edges[-1] >= width / 2 or len(edges) == 1:
        edges = np.append(edges, t1)
    else:
        edges[-1] = t1
    return edges, width


def window_index(times: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)


def rate(times: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Events (or summed weights) per second in each window."""
    counts = np.bincount(window_index(times, edges), weights=weights, minlength=len(edges) - 1)
    return counts / np.diff(edges)


def window_percentiles(times: np.ndarray, values: np.ndarray, edges: np.ndarray,
                       qs: tuple[float, ...] = (50, 99)) -> list[np.ndarray]:
    """Per window, each percentile of the values whose time falls in it (NaN for an empty window)."""
    keep = ~np.isnan(values) & ~np.isnan(times)
    idx = window_index(times[keep], edges)
    vals = values[keep]
    order = np.lexsort((vals, idx))
    idx, vals = idx[order], vals[order]
    nwin = len(edges) - 1
    counts = np.bincount(idx, minlength=nwin)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for q in qs:
        pos = q / 100.0 * np.maximum(counts - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
        result = np.full(nwin, np.nan)
        has = counts > 0
        a = vals[(starts + lo)[has]]
        b = vals[(starts + hi)[has]]
        result[has] = a + (b - a) * (pos - lo)[has]  # np.percentile's linear interpolation
        out.append(result)
    return out


def step_state(start: np.ndarray, duration: np.ndarray, value: np.ndarray,
               edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the duration-weighted mean and the max of a per-step value over the steps starting in it.

    Windows with no step (the engine was idle) are NaN, so the curve shows a gap rather than a made-up zero.
    """
    idx = window_index(start, edges)
    nwin = len(edges) - 1
    busy = np.bincount(idx, weights=duration, minlength=nwin)
    weighted = np.bincount(idx, weights=value * duration, minlength=nwin)
    steps_in = np.bincount(idx, minlength=nwin)
    mean = np.full(nwin, np.nan)
    has = steps_in > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean[has] = np.where(busy[has] > 0, weighted[has] / busy[has], 0.0)
    peak = np.full(nwin, np.nan)
    np.fmax.at(peak, idx, value.astype(np.float64))
    return mean, peak


def step_buckets(n: int, max_points: int = STEP_POINTS) -> np.ndarray:
    """Start indices of runs of k consecutive steps, k chosen so there are at most max_points runs."""
    k = max(1, math.ceil(n / max_points))
    return np.arange(0, n, k)


def bucket_mean(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    sizes = np.diff(np.append(starts, len(values)))
    return np.add.reduceat(values.astype(np.float64), starts) / sizes


def token_times(first_token: np.ndarray, itl_offsets: np.ndarray, itl_values: np.ndarray) -> np.ndarray:
    """The time of every output token: each request's first token, then first token + cumulative ITLs."""
    counts = np.diff(itl_offsets)
    ok = ~np.isnan(first_token)
    if not len(itl_values):
        return first_token[ok]
    running = np.cumsum(itl_values)
    before = np.concatenate([[0.0], running])[itl_offsets[:-1]]  # cumsum up to each request's first ITL
    later = np.repeat(first_token - before, counts) + running
    return np.concatenate([first_token[ok], later[~np.isnan(later)]])
