"""The cluster's replica queue gives events in the order of a heapq of (time, version, replica) tuples whose
stale entries (a replica rescheduled since) are skipped, the order the driver had before and relies on for
identical results."""

import heapq

from hypothesis import example, given, settings
from hypothesis import strategies as st

from servesim.cluster.events import SCAN_MAX, ReplicaQueue

SIZES = (6, SCAN_MAX + 8)  # a scanned queue and a heap


def ops(replicas):
    """Reschedules (time from a few values, so ties happen; replica), pops and looks at the first, interleaved."""
    return st.lists(st.one_of(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0]), st.integers(0, replicas - 1)),
                              st.just("pop"), st.just("first")), max_size=200)


class LazyHeap:
    """The reference: every reschedule pushes a new entry; a popped entry of an older version is skipped."""

    def __init__(self, replicas):
        self.entries, self.version = [], [0] * replicas

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
@given(st.sampled_from(SIZES).flatmap(lambda n: st.tuples(st.just(n), ops(n))))
@example((6, [(0.0, 0), (1.0, 1), "first", (2.0, 0), "first"]))  # the remembered earliest moves behind another
def test_same_order_as_a_heapq_with_stale_entries(case):
    replicas, seq = case
    ours, reference = ReplicaQueue(replicas), LazyHeap(replicas)
    for op in seq:
        if op == "first":  # a scanned queue remembers the answer: a reschedule after it must update or forget it
            if reference.live():
                assert ours.first() == reference.entries[0][::2]
            continue
        if op == "pop":
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
