"""When each replica's work in flight ends: an indexed binary min-heap holding every replica at most once.

Entries are ordered by (time, version, replica), where a replica's version counts its reschedules: the order a
heapq of such tuples gives its live entries, without heapq's stale entries (a rescheduled replica moves instead
of leaving its old entry behind) and, compiled, with keys read from typed lists and compared natively.
"""

from __future__ import annotations


class ReplicaQueue:
    def __init__(self, num_replicas: int) -> None:
        self._time = [0.0] * num_replicas
        self._version = [0] * num_replicas
        self._at = [-1] * num_replicas  # each replica's position in the heap, -1 when it is not in it
        self._heap: list[int] = []  # replica ids (small ints: moving one allocates nothing)

    def __len__(self) -> int:
        return len(self._heap)

    def first(self) -> tuple[float, int]:
        """(time, replica) of the earliest entry."""
        replica = self._heap[0]
        return self._time[replica], replica

    def schedule(self, replica: int, time: float) -> None:
        """The replica's next event is at `time`, replacing the one it had."""
        self._version[replica] = self._version[replica] + 1  # compiled, `+=` on an item is generic arithmetic
        self._time[replica] = time
        i = self._at[replica]
        if i < 0:
            self._heap.append(replica)
            i = len(self._heap) - 1
            self._at[replica] = i
        self._down(self._up(i))

    def pop(self) -> int:
        """Remove the earliest entry; its replica."""
        heap = self._heap
        top = heap[0]
        last = heap.pop()
        self._at[top] = -1
        if heap:
            heap[0] = last
            self._at[last] = 0
            self._down(0)
        return top

    def _before(self, a: int, b: int) -> bool:
        ta, tb = self._time[a], self._time[b]
        if ta != tb:
            return ta < tb
        va, vb = self._version[a], self._version[b]
        return va < vb or (va == vb and a < b)

    def _up(self, i: int) -> int:
        heap, at = self._heap, self._at
        replica = heap[i]
        while i:
            parent = (i - 1) >> 1
            above = heap[parent]
            if not self._before(replica, above):
                break
            heap[i] = above
            at[above] = i
            i = parent
        heap[i] = replica
        at[replica] = i
        return i

    def _down(self, i: int) -> None:
        heap, at = self._heap, self._at
        n = len(heap)
        replica = heap[i]
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and self._before(heap[child + 1], heap[child]):
                child += 1
            below = heap[child]
            if not self._before(below, replica):
                break
            heap[i] = below
            at[below] = i
            i = child
        heap[i] = replica
        at[replica] = i
