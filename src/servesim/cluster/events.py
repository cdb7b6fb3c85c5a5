"""When each replica's work in flight ends: every replica at most once, the earliest first.

Entries are ordered by (time, version, replica), where a replica's version counts its reschedules: the order a
heapq of such tuples gives its live entries, without heapq's stale entries (a rescheduled replica moves instead
of leaving its old entry behind) and, compiled, with keys read from typed lists and compared natively.

Up to SCAN_MAX replicas the earliest is found by a scan of their times, remembered until it may change (an event
then costs one scan of a few floats); above that an indexed binary min-heap keeps sifting to O(log n).
"""

from __future__ import annotations

from servesim.columns import counts_column, filled_column, times_column

SCAN_MAX = 32


class ReplicaQueue:
    def __init__(self, num_replicas: int) -> None:
        # Columns (servesim.columns: unboxed vecs compiled): a list would box a new float and int every reschedule.
        self._time = times_column(num_replicas, 0.0)
        self._version = counts_column(num_replicas)
        self._at = filled_column(num_replicas, -1)  # each replica's position in the heap (0 if scanned), -1 if absent
        self._heap: list[int] = []  # replica ids (small ints: moving one allocates nothing)
        self._scanned = num_replicas <= SCAN_MAX
        self._size = 0
        self._earliest = -1  # a scanned queue's earliest replica, -1 until scanned again

    def __len__(self) -> int:
        return self._size

    def first(self) -> tuple[float, int]:
        """(time, replica) of the earliest entry."""
        replica = self._front()
        return self._time[replica], replica

    def schedule(self, replica: int, time: float) -> None:
        """The replica's next event is at `time`, replacing the one it had."""
        self._version[replica] += 1
        self._time[replica] = time
        i = self._at[replica]
        if self._scanned:
            if i < 0:
                self._at[replica] = 0
                self._size += 1
            earliest = self._earliest
            if earliest == replica:  # it moved: another may be earliest now
                self._earliest = -1
            elif earliest >= 0 and self._before(replica, earliest):
                self._earliest = replica
            return
        if i < 0:
            self._heap.append(replica)
            self._size += 1
            i = len(self._heap) - 1
            self._at[replica] = i
        self._down(self._up(i))

    def pop(self) -> int:
        """Remove the earliest entry; its replica."""
        self._size -= 1
        if self._scanned:
            top = self._front()
            self._at[top] = -1
            self._earliest = -1
            return top
        heap = self._heap
        top = heap[0]
        last = heap.pop()
        self._at[top] = -1
        if heap:
            heap[0] = last
            self._at[last] = 0
            self._down(0)
        return top

    def _front(self) -> int:
        if not self._scanned:
            return self._heap[0]
        earliest = self._earliest
        if earliest < 0:
            at, times = self._at, self._time
            best = 0.0
            for replica in range(len(at)):
                if at[replica] < 0:
                    continue
                t = times[replica]  # the times first, natively; the full order only on a tie
                if earliest < 0 or t < best or (t == best and self._before(replica, earliest)):
                    earliest, best = replica, t
            self._earliest = earliest
        return earliest

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
