"""Waiting queues for policies that do not serve first come first served. Both offer the deque operations
the engine uses: append (arrival), appendleft (a preempted request returns), [0], popleft, remove (an
admission out of order), len."""

from __future__ import annotations

import heapq
from collections import deque
from typing import Callable


class KeyedQueue:
    """Smallest key first, then insertion order; a preempted request re-enters by its key."""

    def __init__(self, key: Callable[[int], tuple]):
        self._key = key
        self._heap: list[tuple] = []
        self._seq = 0

    def append(self, rid: int) -> None:
        heapq.heappush(self._heap, (self._key(rid), self._seq, rid))
        self._seq += 1

    def appendleft(self, rid: int) -> None:
        self.append(rid)  # a def, not an alias: a compiled class drops aliased methods

    def popleft(self) -> int:
        return heapq.heappop(self._heap)[2]

    def remove(self, rid: int) -> None:
        self._heap = [entry for entry in self._heap if entry[2] != rid]
        heapq.heapify(self._heap)

    def __getitem__(self, i: int) -> int:
        if i != 0:
            raise IndexError("only the head of a keyed queue is visible")
        return self._heap[0][2]

    def __len__(self) -> int:
        return len(self._heap)


class ClientQueues:
    """One first-come-first-served queue per client; the policy chooses which client's head goes next.
    `fresh` lists arrivals the policy has not looked at yet."""

    def __init__(self, client_of: Callable[[int], int]):
        self._client_of = client_of
        self.queues: dict[int, deque[int]] = {}
        self.fresh: list[int] = []
        self._n = 0

    def append(self, rid: int) -> None:
        self.queues.setdefault(self._client_of(rid), deque()).append(rid)
        self.fresh.append(rid)
        self._n += 1

    def appendleft(self, rid: int) -> None:
        self.queues.setdefault(self._client_of(rid), deque()).appendleft(rid)
        self._n += 1

    def head(self, client: int) -> int:
        return self.queues[client][0]

    def pop(self, client: int) -> int:
        q = self.queues[client]
        rid = q.popleft()
        if not q:
            del self.queues[client]
        self._n -= 1
        return rid

    def popleft(self) -> int:
        rid = self[0]
        self.remove(rid)
        return rid

    def remove(self, rid: int) -> None:
        """Take out `rid`, the head of its client's queue (the one admitted)."""
        client = self._client_of(rid)
        if self.head(client) != rid:
            raise ValueError(f"request {rid} is not the head of client {client}'s queue")
        self.pop(client)

    def __getitem__(self, i: int) -> int:
        if i != 0 or not self._n:
            raise IndexError("only a head of a client queue is visible")
        return self.queues[min(self.queues)][0]

    def __len__(self) -> int:
        return self._n
