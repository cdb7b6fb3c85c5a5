"""Run a cluster: one global, time-ordered loop over arrivals, KV transfers and replica steps.

Every replica advances in whole steps or exact decode spans. A span is planned as far as the replica alone
can see (its first finish, its free KV blocks) and applied lazily: when a request reaches the replica midway,
the span is cut at the step then running, so the request joins the next step exactly as it would have
stepping one by one. Replicas nobody sends to are never touched, however many arrivals go elsewhere.
Events are handled in time order, outside events before steps at equal times, so a router sees every
replica as it stands at the arrival instant.
"""

from __future__ import annotations

import math
from heapq import heappop, heappush  # the functions, not heapq.X: compiled, one attribute lookup fewer a call
from typing import Callable

import numpy as np

from servesim.cluster.events import ReplicaQueue
from servesim.cluster.replica import Replica
from servesim.cluster.router import RoundRobinRouter, Router
from servesim.cluster.transfer import KVTransfer
from servesim.columns import float_array_column
from servesim.engine.engine import rejects
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
            # A column (8 B a request; compiled, a vec read natively, where an array item is a generic call)
            self._times = float_array_column(np.ascontiguousarray(workload.arrival, dtype=np.float64))
            self._upcoming = self._times[0] if self.n else math.inf  # asked for at every event: kept as a float

    def next_time(self) -> float:
        if self.closed:
            return self._heap[0][0] if self._heap else math.inf
        return self._upcoming

    def pop(self) -> tuple[float, int]:
        if self.closed:
            return heappop(self._heap)
        rid = self._next_rid
        self._next_rid += 1
        at = self._upcoming
        self._upcoming = self._times[rid + 1] if rid + 1 < self.n else math.inf
        return at, rid

    def done(self, rid: int, now: float) -> None:
        """A request finished (or was rejected); a closed-loop client sends its next one."""
        if self.closed and self._next_rid < self.n:
            heappush(self._heap, (now + self.think, self._next_rid))
            self._next_rid += 1


class ClusterRun:
    """Routes a workload over `entry` replicas (co-located, or the prefill pool) and, when disaggregated,
    hands each prefilled request to a `decode` replica once its KV has crossed the link."""

    def __init__(self, entry: list[Replica], router: Router, decode: list[Replica] | None = None,
                 decode_router: Router | None = None,
                 transfer: KVTransfer | None = None):
        self.entry = entry
        self.router = router
        self.decode = decode or []
        self.decode_router = decode_router
        self.transfer = transfer
        self.replicas = entry + self.decode
        n = entry[0].engine.req.n
        self.routed = [-1] * n  # entry replica of each request
        self.decoded_on = [-1] * n  # decode replica of each request (disaggregated)
        self.rejected_upfront: list[int] = []
        self.prefill_done = [math.nan] * n if self.decode else None
        self._handoffs: list[tuple[float, int, int]] = []  # (prefill end, request, prefill replica)
        self._arrivals: list[tuple[float, int, int]] = []  # (KV arrived, request, decode replica)
        self._answered: list[tuple[float, int]] = []  # closed loop: (finished, request) not yet told to the client
        self._events = ReplicaQueue(len(self.replicas))  # when each replica's work in flight ends
        self._closed = False
        self._lone = False
        self._source: ArrivalSource | None = None  # the run's arrivals (a typed attribute: a native call to them)
        self._done = 0
        self._progress: Callable[[int], None] | None = None
        self._report_every = 1

    def run(self, workload: Workload, progress: Callable[[int], None] | None = None) -> float:
        source = ArrivalSource(workload)
        self._closed = source.closed
        self._source = source
        self._lone = len(self.entry) == 1
        self._progress = progress
        self._report_every = max(1, len(workload) // 200)
        disagg = bool(self.decode)
        decode_engine = (self.decode or self.entry)[0].engine  # read only when disaggregated
        decode_cfg, dreq = decode_engine.cfg, decode_engine.req
        handoffs, arrivals, answered, events = self._handoffs, self._arrivals, self._answered, self._events
        replicas = self.replicas
        inf = math.inf
        now = 0.0
        while True:
            t_step = events.first()[0] if events else inf
            t_done = answered[0][0] if answered else inf
            t_src = source.next_time()  # a native call (a bound method in a local is called generically)
            t_hand = handoffs[0][0] if handoffs else inf
            t_arr = arrivals[0][0] if arrivals else inf
            t_event = t_done  # min() of four, in native compares (compiled, min(a, b, c, d) is a generic call)
            if t_src < t_event:
                t_event = t_src
            if t_hand < t_event:
                t_event = t_hand
            if t_arr < t_event:
                t_event = t_arr
            if t_event <= t_step and t_event < inf:  # outside events first at equal times
                now = t_event
                if t_done == t_event:  # a closed-loop client got its answer: it sends next, in time order
                    at, rid = heappop(answered)
                    source.done(rid, at)
                elif t_src == t_event:
                    at, rid = source.pop()
                    if disagg and rejects(decode_cfg, dreq.prompt_len[rid], dreq.max_tokens[rid]):
                        self.rejected_upfront.append(rid)
                        self.entry[0].engine.req.arrival[rid] = at
                        source.done(rid, at)
                        self._count(1)
                        continue
                    self._bring_up_to(self.entry, at)
                    i = self.router.choose(rid, self.entry, at)
                    self.routed[rid] = i
                    if not self._deliver(self.entry[i], rid, at):
                        source.done(rid, at)
                        self._count(1)
                elif t_hand == t_event:
                    at, rid, p = heappop(handoffs)
                    self._bring_up_to(self.decode, at)
                    self._hand_over(rid, p, at)
                else:
                    at, rid, d = heappop(arrivals)
                    target = self.decode[d]
                    target.incoming -= 1
                    self._deliver(target, rid, at, dreq.prompt_len[rid] - 1)
                continue
            if not events:
                break
            now = t_step
            i = events.pop()
            rep = replicas[i]
            if rep.engine.pending is not None:
                self._settle(rep, inf)
            if rep.engine.busy:
                self._start(rep, now)
        if progress is not None:
            progress(self._done)
        return now

    # --- replica work ---

    def _schedule(self, rep: Replica, at: float) -> None:
        self._events.schedule(rep.index, at)

    def _start(self, rep: Replica, now: float) -> None:
        # A lone co-located replica gets every arrival: plan its span only up to the next one.
        lone = self._lone and rep.role == "colocated"
        source = self._source
        hint = source.next_time() if lone and source is not None else math.inf
        end = rep.engine.start(now, hint, through_finishes=lone and not self._closed)
        rep.next_at = end
        rep.finishing = len(rep.engine.finished_now)  # a single step already applied its finishes
        self._collect(rep, end)
        self._schedule(rep, end)

    def _settle(self, rep: Replica, until: float) -> None:
        """Apply the replica's pending span up to the step in flight at `until`."""
        end = rep.engine.settle(until)
        rep.next_at = end
        rep.finishing = len(rep.engine.finished_now)
        self._collect(rep, end)
        self._schedule(rep, end)

    def _bring_up_to(self, pool: list[Replica], at: float) -> None:
        """Spans that end exactly at `at` are over by then: a router looking at `at` sees their finishes."""
        for rep in pool:
            if rep.engine.pending is not None and rep.next_at <= at:
                self._settle(rep, at)

    def _collect(self, rep: Replica, end: float) -> None:
        fin = rep.engine.finished_now
        if not fin:
            return
        if rep.role == "prefill":
            for rid in fin:
                heappush(self._handoffs, (end, rid, rep.index))
            return
        if self._closed:  # finish times differ within a span: answer clients in time order
            finished = rep.engine.req.finished
            for rid in fin:
                heappush(self._answered, (finished[rid], rid))
        self._count(len(fin))

    def _count(self, n: int) -> None:
        before = self._done
        self._done += n
        if self._progress is not None and self._done // self._report_every != before // self._report_every:
            self._progress(self._done)

    def _deliver(self, rep: Replica, rid: int, at: float, transferred: int = 0) -> bool:
        eng = rep.engine
        if eng.pending is not None:  # cut the span at the step running now: the next step sees the request
            self._settle(rep, at)
        was_busy = eng.busy
        ok = eng.add(rid, at, transferred)
        if ok and not was_busy:
            rep.next_at = max(rep.next_at, at)
            self._schedule(rep, rep.next_at)
        return ok

    def _hand_over(self, rid: int, p: int, at: float) -> None:
        """A prefill ended: pick a decode replica and put the KV on the link."""
        assert self.prefill_done is not None and self.transfer is not None and self.decode_router is not None, \
            "only a disaggregated run hands over"
        self.prefill_done[rid] = at
        d = self.decode_router.choose(rid, self.decode, at)
        self.decoded_on[rid] = d
        target = self.decode[d]
        target.incoming += 1
        preq = self.entry[p].engine.req
        arrive = self.transfer.send(preq.prompt_len[rid], p, d, preq.first_scheduled[rid], at)
        heappush(self._arrivals, (arrive, rid, d))


def run_replica(engine, workload: Workload, progress: Callable[[int], None] | None = None) -> float:
    """Simulate one replica until all requests finish; return the time of the last event."""
    replica = Replica(0, "colocated", "", 0, engine)
    return ClusterRun([replica], RoundRobinRouter(1)).run(workload, progress)
