"""Feed a workload's requests to a replica at their arrival times and run it until every request is done."""

from __future__ import annotations

import heapq
import math
from typing import Callable

from servesim.workload.workload import Workload


class ArrivalSource:
    """Open loop: the trace's times. Closed loop: each client sends its next request when the last is done."""

    def __init__(self, workload: Workload):
        self.n = len(workload)
        self.closed = workload.closed_loop
        self.think = workload.think_time
        self._next_rid = 0
        if self.closed:
            first = min(workload.concurrency, self.n)
            self._heap = [(0.0, rid) for rid in range(first)]
            self._next_rid = first
        else:
            self._times = workload.arrival.tolist()

    def next_time(self) -> float:
        if self.closed:
            return self._heap[0][0] if self._heap else math.inf
        return self._times[self._next_rid] if self._next_rid < self.n else math.inf

    def pop(self) -> tuple[float, int]:
        if self.closed:
            return heapq.heappop(self._heap)
        rid = self._next_rid
        self._next_rid += 1
        return self._times[rid], rid

    def done(self, rid: int, now: float) -> None:
        """A request finished (or was rejected); a closed-loop client sends its next one."""
        if self.closed and self._next_rid < self.n:
            heapq.heappush(self._heap, (now + self.think, self._next_rid))
            self._next_rid += 1


def run_replica(engine, workload: Workload, progress: Callable[[int], None] | None = None) -> float:
    """Simulate until all requests finish; return the time of the last event."""
    source = ArrivalSource(workload)
    now = 0.0
    next_arrival = source.next_time()
    done_count = 0
    report_every = max(1, len(workload) // 200)
    while True:
        while next_arrival <= now:
            at, rid = source.pop()
            if not engine.add(rid, at):
                source.done(rid, at)
                done_count += 1
            next_arrival = source.next_time()
        if not engine.busy:
            if next_arrival == math.inf:
                break
            now = next_arrival
            continue
        now = engine.step(now, next_arrival, through_finishes=not source.closed)
        if engine.finished_now:
            for rid in engine.finished_now:
                source.done(rid, now)
            before = done_count
            done_count += len(engine.finished_now)
            if progress is not None and done_count // report_every != before // report_every:
                progress(done_count)
            next_arrival = source.next_time()
    if progress is not None:
        progress(done_count)
    return now
