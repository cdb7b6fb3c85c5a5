"""Request-level (static) batching, FasterTransformer-style: the baseline continuous batching beats.

When the replica is idle, a batch of up to max_num_seqs waiting requests is formed first come first served,
each reserving KV for its prompt plus all its output tokens (no preemption is ever needed). The batch's
prompts run together in one step, then the batch decodes until its longest member is done; nobody joins a
running batch. One simplification flatters it: a finished member stops costing compute (FasterTransformer
keeps computing padded rows), while its seat still stays empty until the whole batch ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.kv_cache import cdiv
from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.policies.common import admit, all_decoding, give_in_order

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class StaticPolicy(Policy):
    name: ClassVar[str] = "static"

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {}

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        if eng.running:
            give_in_order(eng, list(eng.running), 1 << 62, out)
            return
        cfg, req, kv = eng.cfg, eng.req, eng.kv
        waiting, running = eng.waiting, eng.running
        reserve = kv.num_free
        while waiting and len(running) < cfg.max_num_seqs:
            rid: int = waiting[0]  # typed: the queue is Any
            blocks = cdiv(min(req.prompt_len[rid] + req.max_tokens[rid], cfg.max_model_len), cfg.block_size)
            if blocks > reserve:
                break
            n = admit(eng, rid, 1 << 62, now, watermark=False)
            if n == 0:
                break
            reserve -= blocks
            out.add(rid, n)

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        return all_decoding(eng)  # nobody is admitted while a batch runs
