"""The cluster's replica queue gives events in the order of a heapq of (time, version, replica) tuples whose
stale entries (a replica rescheduled since) are skipped, the order the driver had before and relies on for
identical results."""

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.cluster.events import ReplicaQueue

# Reschedules (time from a few values, so ties happen; replica) and pops, interleaved.
ops = st.lists(st.one_of(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]), st.integers(0, 5)), st.just(None)),
               max_size=200)


class LazyHeap:
    """The reference: every reschedule pushes a new entry; a popped entry of an older version is skipped."""

    def __init__(self):
        self.entries, self.version = [], [0] * 6

    def schedule(self, replica, time):
        self.version[replica] += 1
        heapq.heappush(self.entries, (time, self.version[replica], replica))

    def _drop_stale(self):
        while self.entries and self.entries[0][1] != self.version[self.entries[0][2]]:
            heapq.heappop(self.entries)

    def live(self):
        self._drop_stale()
        return bool(self.entries)

    def pop(self):
        self._drop_stale()
        time, _, replica = heapq.heappop(self.entries)
        return time, replica


@settings(max_examples=300, deadline=None)
@given(ops)
def test_same_order_as_a_heapq_with_stale_entries(seq):
    ours, reference = ReplicaQueue(6), LazyHeap()
    for op in seq:
        if op is None:
            assert bool(len(ours)) == reference.live()
            if reference.live():
                assert ours.first() == reference.entries[0][::2]
                time, replica = reference.pop()
                assert ours.first()[0] == time and ours.pop() == replica
            continue
        time, replica = op
        ours.schedule(replica, time)
        reference.schedule(replica, time)
    while reference.live():
        time, replica = reference.pop()
        assert ours.pop() == replica
    assert len(ours) == 0
