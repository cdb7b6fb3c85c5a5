"""The replicas' pending step ends: a binary min-heap of (time, version, replica), as heapq keeps it.

heapq compares its tuples through Python's generic comparison, element by element; this heap, compiled, unpacks
them into native floats and ints to compare. The entries are unique (a replica's version grows at every
reschedule), so entries leave in the same order as from heapq, whatever the sifting.
"""

from __future__ import annotations

from typing import Any

Entry = tuple[float, int, int]  # (time, version, replica)


def _before(a: Entry, b: Entry) -> bool:
    ta, va, ra = a
    tb, vb, rb = b
    return ta < tb or (ta == tb and (va < vb or (va == vb and ra < rb)))


class EventHeap:
    def __init__(self) -> None:
        # Entries as the tuple objects pushed: moving one between slots moves a pointer, not a new tuple.
        self._items: list[Any] = []

    def __len__(self) -> int:
        return len(self._items)

    def first(self) -> Entry:
        return self._items[0]

    def push(self, time: float, version: int, replica: int) -> None:
        items = self._items
        entry: Any = (time, version, replica)
        items.append(entry)
        i = len(items) - 1
        while i:
            parent = (i - 1) >> 1
            above: Any = items[parent]
            if not _before(entry, above):
                break
            items[i] = above
            i = parent
        items[i] = entry

    def pop(self) -> Entry:
        items = self._items
        top: Any = items[0]
        last: Any = items.pop()
        n = len(items)
        if n:
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                smaller: Any = items[child]
                if child + 1 < n and _before(items[child + 1], smaller):
                    child += 1
                    smaller = items[child]
                if not _before(smaller, last):
                    break
                items[i] = smaller
                i = child
            items[i] = last
        return top
