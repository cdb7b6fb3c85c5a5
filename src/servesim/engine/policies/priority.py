"""Priority scheduling: vLLM v1's `--scheduling-policy priority`, plus preemption to admit.

Every request has a priority class (smaller is more important, vLLM's convention; from the workload's
`--clients` spec). Waiting requests are served by (priority, arrival). Running requests get their tokens
as in vLLM v1; when blocks run out the victim is the least important running request (latest arrival
among equals), as vLLM picks it. What vLLM does not do and FastSwitch (Shen et al., 2024) argues for: when
the most important waiting request cannot start (no seat or no blocks) and a running request has a strictly
less important class, that request is preempted (recompute) to make room, in the same step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.policies.common import admit, all_decoding, give_in_order
from servesim.engine.policies.queues import KeyedQueue
from servesim.engine.requests import RequestTable

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class PriorityPolicy(Policy):
    name: ClassVar[str] = "priority"

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {}

    def make_waiting_queue(self, req: RequestTable) -> KeyedQueue:
        self._prio = req.priority if req.priority is not None else [0] * req.n
        arrival = req.arrival
        prio = self._prio
        return KeyedQueue(lambda rid: (prio[rid], arrival[rid], rid))

    def _worst_running(self, eng: ReplicaEngine) -> int:
        prio, arrival = self._prio, eng.req.arrival
        return max(eng.running, key=lambda r: (prio[r], arrival[r], r))

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        cfg = eng.cfg
        running, waiting = eng.running, eng.waiting
        total = cfg.max_num_batched_tokens
        budget = give_in_order(eng, list(running), total, out, victim=self._worst_running)
        if eng.preempted_now:
            return
        prio = self._prio
        while waiting and budget > 0:
            rid: int = waiting[0]  # typed: the queue is Any
            n = admit(eng, rid, budget, now) if len(running) < cfg.max_num_seqs else 0
            if n == 0:
                if not running:
                    break
                loser = self._worst_running(eng)
                if prio[loser] <= prio[rid]:
                    break
                running.remove(loser)
                out.remove(loser)
                eng.preempt(loser)
                budget = total - out.total()
                continue
            out.add(rid, n)
            budget -= n

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        b = len(eng.running)
        budget = eng.cfg.max_num_batched_tokens
        if b > budget or not all_decoding(eng):
            return False
        if not eng.waiting or b >= budget:
            return True
        if self._prio[eng.waiting[0]] < self._prio[self._worst_running(eng)]:
            return False  # the head may preempt its way in
        return b >= eng.cfg.max_num_seqs or eng.head_blocked()
