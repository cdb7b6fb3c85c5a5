"""Iteration-level batching without chunked prefill, prefill first: vLLM v0's default scheduler.

Orca (Yu et al., OSDI 2022) made the batch change every iteration instead of every request; vLLM v0
(Kwon et al., SOSP 2023) kept that and ran prompts whole. A step is either prefills or decodes, never both:
while a waiting request can be admitted (its whole prompt within the token budget, its blocks free above a
1% watermark, a seat free) the step runs prompts only and every running decode stalls; otherwise the step
decodes all running requests, preempting (recompute) the last admitted when blocks run out. The budget
defaults to max(max_model_len, 2048), as in vLLM v0 without chunked prefill.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.policies.common import admit, all_decoding, give_in_order

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class OrcaPolicy(Policy):
    name: ClassVar[str] = "orca"

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {"enable_chunked_prefill": False, "watermark": 0.01, "max_num_batched_tokens": max(max_model_len, 2048)}

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        cfg = eng.cfg
        waiting, running = eng.waiting, eng.running
        budget = cfg.max_num_batched_tokens
        while waiting and len(running) < cfg.max_num_seqs:
            rid: int = waiting[0]  # typed: the queue is Any
            n = admit(eng, rid, budget, now, chunked=False, watermark=True)
            if n == 0:
                break
            out.add(rid, n)
            budget -= n
        if out.n:
            return
        give_in_order(eng, list(running), budget, out)

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        if len(eng.running) > eng.cfg.max_num_batched_tokens or not all_decoding(eng):
            return False
        # No prefill can start: the head's whole prompt always fits an empty step's budget (>= max_model_len),
        # so only a missing seat or missing blocks keep it out.
        return not eng.waiting or len(eng.running) >= eng.cfg.max_num_seqs or eng.head_blocked()
