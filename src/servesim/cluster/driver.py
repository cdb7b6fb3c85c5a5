"""Run a cluster: one global, time-ordered loop over arrivals, KV transfers and replica steps.

Every replica advances in whole steps (or exact decode spans). Events are handled in time order, arrivals
before steps at equal times, so a router sees every replica as it stands at the arrival instant. A
replica's span may not run past the earliest moment a new request could reach it (its horizon): the next
arrival; in a closed loop, the next step end of any other replica that could finish a request and make its
client send again; for a decode replica, also the next KV transfer or prefill that could end.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable

from servesim.cluster.replica import Replica
from servesim.cluster.transfer import KVTransfer
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


class ClusterRun:
    """Routes a workload over `entry` replicas (co-located, or the prefill pool) and, when disaggregated,
    hands each prefilled request to a `decode` replica once its KV has crossed the link."""

    def __init__(self, entry: list[Replica], router, decode: list[Replica] | None = None, decode_router=None,
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

    def run(self, workload: Workload, progress: Callable[[int], None] | None = None) -> float:
        source = ArrivalSource(workload)
        disagg = bool(self.decode)
        finals = self.decode if disagg else self.entry  # replicas whose finishes answer a client
        decode_cfg = self.decode[0].engine.cfg if disagg else None
        dreq = self.decode[0].engine.req if disagg else None
        handoffs, arrivals = self._handoffs, self._arrivals
        # A span may run on past requests finishing when nothing depends on when they finish: no client
        # waits to send (open loop) and the replica's router does not look at its load (round robin, or alone).
        through = [not source.closed and r.role != "prefill"
                   and (getattr(self.decode_router if r.role == "decode" else self.router, "stateless", False)
                        or len(self.decode if r.role == "decode" else self.entry) == 1)
                   for r in self.replicas]
        report_every = max(1, len(workload) // 200)
        done = 0
        now = 0.0

        def finished(count: int) -> None:
            nonlocal done
            before = done
            done += count
            if progress is not None and done // report_every != before // report_every:
                progress(done)

        answered = self._answered
        replicas = self.replicas
        simple_horizon = not source.closed
        next_arrival = source.next_time
        inf = math.inf
        while True:
            t_done = answered[0][0] if answered else inf
            t_src = next_arrival()
            t_hand = handoffs[0][0] if handoffs else inf
            t_arr = arrivals[0][0] if arrivals else inf
            rep, t_step = None, inf
            for r in replicas:
                if r.next_at < t_step and r.engine.busy:
                    rep, t_step = r, r.next_at
            t_event = t_src
            if t_done < t_event or t_hand < t_event or t_arr < t_event:
                t_event = min(t_done, t_src, t_hand, t_arr)
            if t_event <= t_step and t_event < inf:
                now = t_event
                if t_done == t_event:  # a closed-loop client got its answer: it sends next, in time order
                    at, rid = heapq.heappop(answered)
                    source.done(rid, at)
                elif t_src == t_event:
                    at, rid = source.pop()
                    if disagg and rejects(decode_cfg, dreq.prompt_len[rid], dreq.max_tokens[rid]):
                        self.rejected_upfront.append(rid)
                        self.entry[0].engine.req.arrival[rid] = at
                        source.done(rid, at)
                        finished(1)
                        continue
                    i = self.router.choose(rid, self.entry, at)
                    self.routed[rid] = i
                    if not self._deliver(self.entry[i], rid, at):
                        source.done(rid, at)
                        finished(1)
                elif t_hand == t_event:
                    at, rid, p = heapq.heappop(handoffs)
                    self._hand_over(rid, p, at)
                else:
                    at, rid, d = heapq.heappop(arrivals)
                    target = self.decode[d]
                    target.incoming -= 1
                    self._deliver(target, rid, at, dreq.prompt_len[rid] - 1)
                continue
            if rep is None:
                break
            now = t_step
            # open loop, co-located or prefill: only the next arrival can reach the replica
            horizon = t_src if simple_horizon and rep.role != "decode" else self._horizon(rep, source, finals)
            end = rep.engine.step(t_step, horizon, through[rep.index])
            rep.next_at = end
            fin = rep.engine.finished_now
            rep.finishing = len(fin)
            if fin:
                if rep.role == "prefill":
                    for rid in fin:
                        heapq.heappush(handoffs, (end, rid, rep.index))
                else:
                    if source.closed:  # finish times differ within a span: queue them in time order
                        for rid in fin:
                            heapq.heappush(answered, (float(rep.engine.req.finished[rid]), rid))
                    finished(len(fin))
        if progress is not None:
            progress(done)
        return now

    @staticmethod
    def _deliver(rep: Replica, rid: int, at: float, transferred: int = 0) -> bool:
        was_busy = rep.engine.busy
        ok = rep.engine.add(rid, at, transferred)
        if ok and not was_busy:
            rep.next_at = max(rep.next_at, at)
        return ok

    def _hand_over(self, rid: int, p: int, at: float) -> None:
        """A prefill ended: pick a decode replica and put the KV on the link."""
        self.prefill_done[rid] = at
        d = self.decode_router.choose(rid, self.decode, at)
        self.decoded_on[rid] = d
        target = self.decode[d]
        target.incoming += 1
        preq = self.entry[p].engine.req
        arrive = self.transfer.send(preq.prompt_len[rid], p, d, preq.first_scheduled[rid], at)
        heapq.heappush(self._arrivals, (arrive, rid, d))

    def _horizon(self, rep: Replica, source: ArrivalSource, finals: list[Replica]) -> float:
        h = source.next_time()
        if source.closed:
            if self._answered:
                h = min(h, self._answered[0][0] + source.think)
            for r in finals:
                if r is not rep and r.engine.busy and r.next_at + source.think < h:
                    h = r.next_at + source.think
        if rep.role == "decode":
            if self._arrivals:
                h = min(h, self._arrivals[0][0])
            if self._handoffs:
                h = min(h, self._handoffs[0][0])
            for r in self.entry:
                if r.engine.busy and r.next_at < h:
                    h = r.next_at
        return h


def run_replica(engine, workload: Workload, progress: Callable[[int], None] | None = None) -> float:
    """Simulate one replica until all requests finish; return the time of the last event."""
    from servesim.cluster.router import RoundRobinRouter

    replica = Replica(0, "colocated", "", 0, engine)
    return ClusterRun([replica], RoundRobinRouter(1)).run(workload, progress)
