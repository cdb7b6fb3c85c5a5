"""The cluster's event heap gives entries in heapq's order (the driver relies on it for identical results)."""

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.cluster.events import EventHeap

# Pushes (time from a few values, so ties happen; replica) and pops, interleaved; versions grow per replica.
ops = st.lists(st.one_of(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]), st.integers(0, 5)), st.just(None)),
               max_size=200)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_same_order_as_heapq(seq):
    ours, reference, versions = EventHeap(), [], [0] * 6
    for op in seq:
        if op is None:
            if reference:
                assert ours.first() == reference[0]
                assert ours.pop() == heapq.heappop(reference)
            continue
        time, replica = op
        versions[replica] += 1
        ours.push(time, versions[replica], replica)
        heapq.heappush(reference, (time, versions[replica], replica))
        assert len(ours) == len(reference)
    while reference:
        assert ours.pop() == heapq.heappop(reference)
    assert len(ours) == 0
