"""servesim.columns: the per-request and per-span columns, vecs compiled and lists or arrays from the sources."""

from bisect import bisect_left

from hypothesis import example, given
from hypothesis import strategies as st

from servesim.columns import as_times, bisect_times, new_times, push


@given(st.lists(st.floats(-1e3, 1e3), max_size=40), st.floats(-1.1e3, 1.1e3), st.data())
@example([1.0, 2.0, 2.0, 3.0], 2.0, None)  # equal times: the leftmost
def test_bisect_times_is_bisect_left(values, t, data):
    values.sort()
    times = as_times(values)
    lo, hi = 0, len(values)
    if data is not None:
        lo = data.draw(st.integers(0, len(values)))
        hi = data.draw(st.integers(lo, len(values)))
    assert bisect_times(times, t, lo, hi) == bisect_left(values, t, lo, hi)


def test_pushed_times_read_back_in_order():
    times = new_times()
    for t in (0.5, 0.25, 3.0):
        times = push(times, t)
    assert list(times) == [0.5, 0.25, 3.0] and len(times) == 3
