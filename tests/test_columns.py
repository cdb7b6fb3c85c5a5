"""servesim.columns: the per-request and per-span columns, vecs compiled and lists or arrays from the sources."""

from bisect import bisect_left, bisect_right

from hypothesis import example, given
from hypothesis import strategies as st

from servesim.columns import (as_times, bisect_times, count_at_most, counts_column, int_column, new_times,
                              nth_smallest, push, widened)
from servesim.engine.policies.base import Schedule


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


@given(st.integers(0, 3), st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 8192)), max_size=40))
def test_a_schedule_keeps_every_request_in_order_past_its_capacity(capacity, entries):
    out = Schedule(capacity)
    for rid, tokens in entries:
        out.add(rid, tokens)
    assert out.pairs() == entries
    out.n = 0  # the engine reuses it: the next step's schedule starts empty
    out.add(7, 1)
    assert out.pairs() == [(7, 1)]


def test_a_widened_column_keeps_its_values_and_grows():
    grown = widened(int_column([3, 1, 4]))
    assert list(grown) == [3, 1, 4] + [0] * 8
    assert list(widened(counts_column(10))) == [0] * 20


@given(st.lists(st.integers(-3, 300), min_size=1, max_size=60), st.data())
def test_rank_queries_on_an_int_column_match_the_sorted_list(values, data):
    column = int_column(list(values))
    k = data.draw(st.integers(0, len(values) - 1))
    t = data.draw(st.integers(-5, 305))
    assert nth_smallest(column, k) == sorted(values)[k]
    assert count_at_most(column, t) == bisect_right(sorted(values), t)
    assert list(column) == values  # the queries leave the column's order alone


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12), st.integers(1, 100)), max_size=60))
def test_a_schedule_behaves_as_an_insertion_ordered_dict_under_add_and_remove(ops):
    # The policies used a dict request -> tokens: scheduled[rid] = n for a request not scheduled yet, and
    # scheduled.pop(victim, None) when a preemption takes a victim's tokens back.
    out, model = Schedule(2), {}
    for adding, rid, tokens in ops:
        if adding and rid not in model:
            out.add(rid, tokens)
            model[rid] = tokens
        elif not adding:
            out.remove(rid)
            model.pop(rid, None)
        assert out.pairs() == list(model.items())
        assert out.total() == sum(model.values())


def test_columns_from_numpy_and_filled_hold_their_values():
    import numpy as np

    from servesim.columns import array_column, filled_column

    values = np.array([5, 0, 2**40, 7], dtype=np.int64)
    assert list(array_column(values)) == values.tolist()
    assert list(filled_column(3, -10)) == [-10, -10, -10]
