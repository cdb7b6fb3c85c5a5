"""The engine's columns: per-request state indexed by request id, a step's schedule, a decode span's step end
times and block slack. Unboxed `vec`s when compiled, lists and arrays when run from the sources.

Compiled, reading a list item unboxes a Python int and storing one boxes a new one (PyLong allocation and
refcounting for every request of every step); a vec item is a plain int64 in C. Run from the sources, a list
is the faster column (a vec's item access goes through its Python protocol), and librt may be absent.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from servesim.vec_types import append, i64, u8, vec

COMPILED: Final = not __file__.endswith(".py")  # Final: compiled, a C static, not a module-dict lookup per use


def int_column(values: list[int]) -> vec[i64]:
    """A column holding `values`: a vec when this module runs compiled, the list itself otherwise."""
    if COMPILED:
        column = vec[i64](capacity=len(values))  # not vec[i64](values): see zeros_column
        for v in values:
            column = append(column, v)
        return column
    return values  # type: ignore[return-value]  # run from the sources: a list stands in for the vec


def counts_column(n: int) -> vec[i64]:
    """n zeros: a vec compiled, an array("q") from the sources (8 bytes a value whatever it grows to)."""
    if COMPILED:
        return vec[i64]([0] * n)
    return array("q", bytes(8 * n))  # type: ignore[return-value]


def zeros_column(n: int) -> vec[i64]:
    """n zeros to fill by index, for short-lived columns: a vec compiled, a list from the sources. (Compiled,
    `vec[i64]([0] * n)` is built natively; `vec[i64](some_list)` first asks the list for a buffer, and the
    TypeError it formats costs more than a span's whole plan.)"""
    if COMPILED:
        return vec[i64]([0] * n)
    return [0] * n  # type: ignore[return-value]


def filled_column(n: int, fill: int) -> vec[i64]:
    """n times `fill`, as zeros_column builds them (a list from the sources)."""
    if COMPILED:
        return vec[i64]([fill] * n)
    return [fill] * n  # type: ignore[return-value]


def array_column(values: Any) -> vec[i64]:
    """A column from an int64 numpy array: compiled, a vec copied through the buffer protocol (no Python int per
    value); from the sources, a list."""
    if COMPILED:
        return vec[i64](values)
    return values.tolist()  # type: ignore[no-any-return]


def float_array_column(values: Any) -> vec[float]:
    """array_column for a float64 numpy array: a vec compiled, a list from the sources."""
    if COMPILED:
        return vec[float](values)
    return values.tolist()  # type: ignore[no-any-return]


def times_column(n: int, fill: float) -> vec[float]:
    """n times `fill`: a vec compiled, an array("d") from the sources."""
    if COMPILED:
        return vec[float]([fill] * n)
    return array("d", [fill]) * n  # type: ignore[return-value]


def widened(values: vec[i64]) -> vec[i64]:
    """`values` followed by as many zeros again (at least 8): a new column of the same kind."""
    extra = max(len(values), 8)
    if COMPILED:
        out = vec[i64]([0] * (len(values) + extra))
        for i in range(len(values)):
            out[i] = values[i]
        return out
    zeros = array("q", bytes(8 * extra)) if isinstance(values, array) else [0] * extra
    return values + zeros  # type: ignore[operator, return-value]  # from the sources: an array("q") or a list


def codes_column(n: int) -> vec[u8]:
    """n zero bytes: a vec compiled, a bytearray from the sources."""
    if COMPILED:
        return vec[u8](bytes(n))
    return bytearray(n)  # type: ignore[return-value]


# A decode span's step end times, built step by step (CalibratedModel.decode_span_until) and searched (the engine).
def new_times(capacity: int = 0) -> vec[float]:
    """An empty list of times to `push` onto: a vec compiled (room for `capacity` without growing), a list from
    the sources."""
    if COMPILED:
        return vec[float](capacity=capacity)
    return []  # type: ignore[return-value]


def push(times: vec[float], t: float) -> vec[float]:
    """`times` with `t` appended (a vec is a value: use the result)."""
    if COMPILED:
        return append(times, t)
    times.append(t)  # type: ignore[attr-defined]
    return times


def push_int(values: vec[i64], v: int) -> vec[i64]:
    """`values` with `v` appended (a vec is a value: use the result); from the sources, a list or array("q")."""
    if COMPILED:
        return append(values, v)
    values.append(v)  # type: ignore[attr-defined]
    return values


# A decode span's requests' block slack (ReplicaEngine._plan_span), queried by rank.
def nth_smallest(values: vec[i64], k: int) -> int:
    """sorted(values)[k], counting instead of sorting: the values are small (block slack, below the block size)."""
    low, top = 0, 0
    for v in values:
        if v < low:
            low = v
        if v > top:
            top = v
    if low < 0:  # not slack: no counting
        return sorted(list(values))[k]
    counts = counts_column(top + 1)
    for v in values:
        counts[v] += 1
    seen = 0
    for v in range(top + 1):
        seen += counts[v]
        if seen > k:
            return v
    raise IndexError(f"nth_smallest: k = {k} of {len(values)} values")


def count_at_most(values: vec[i64], t: int) -> int:
    """How many values are <= t (bisect_right of the sorted values)."""
    n = 0
    for v in values:
        if v <= t:
            n += 1
    return n


def as_times(values: list[float]) -> vec[float]:
    """Times computed elsewhere (a list) in the form `new_times` gives."""
    if COMPILED:
        times = vec[float](capacity=len(values))  # not vec[float](values): see zeros_column
        for t in values:
            times = append(times, t)
        return times
    return values  # type: ignore[return-value]


def bisect_times(times: vec[float], t: float, lo: int, hi: int) -> int:
    """bisect.bisect_left(times, t, lo, hi), compiled natively: the first i in lo..hi with times[i] >= t."""
    while lo < hi:
        mid = (lo + hi) // 2
        if times[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo
