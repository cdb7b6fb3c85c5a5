"""SGLang's scheduler (Zheng et al., "SGLang", NeurIPS 2024; sglang/srt/managers/scheduler.py).

- Prefix cache and longest-prefix-match (LPM) ordering. SGLang keeps a radix tree of cached token
  sequences. servesim's KV cache (engine/kv_cache.py) already is one at block granularity: a request's
  chained block hashes are a path from the root, a lookup walks it to the first miss, and freed blocks are
  evicted tail first in LRU order, which is SGLang's leaf-first LRU eviction. What SGLang adds, and this
  policy does, is ordering the waiting queue by the longest cached prefix before each prefill (ties first
  come first served), falling back to arrival order when more than 128 requests wait, as SGLang does.
- Prefill first, not mixed: a step is a prefill batch whenever one can be formed (the prompt in progress
  continues first, then new requests in LPM order, the last one chunked to the `chunked_prefill_size` token
  budget); otherwise it decodes every running request. Decodes stall during prefill steps.
- Conservative admission: a request starts only if the free KV, minus `new_token_ratio` (default SGLang's
  initial 0.7) of the output tokens every running request may still produce, holds its prompt and that
  fraction of its own output. Running out of blocks while decoding retracts the last admitted (recompute).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.policies.base import Policy, Schedule
from servesim.errors import ServesimError
from servesim.engine.policies.common import admit, all_decoding, give_in_order, need

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine

LPM_QUEUE_LIMIT = 128  # longer queues are served first come first served (SGLang's fallback)
DECODE_ALL = 1 << 62


class SGLangPolicy(Policy):
    name: ClassVar[str] = "sglang"

    def __init__(self, new_token_ratio: float = 0.7):
        if not 0.0 <= new_token_ratio <= 1.0:
            raise ServesimError(f"sglang's new_token_ratio must be in [0, 1], got {new_token_ratio}")
        self.new_token_ratio = new_token_ratio

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {}

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        cfg = eng.cfg
        running, waiting = eng.running, eng.waiting
        budget = cfg.max_num_batched_tokens
        # The prompt in progress (chunked) continues before anything new.
        in_progress = [r for r in running if need(eng, r) > 1]
        budget = give_in_order(eng, in_progress, budget, out)
        if waiting and budget > 0 and len(running) < cfg.max_num_seqs and not eng.preempted_now:
            if len(waiting) <= LPM_QUEUE_LIMIT:
                self._order_by_prefix(eng)
            free_tokens = self._unreserved_tokens(eng)
            while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
                rid: int = waiting[0]  # typed: the queue is Any
                want = self._admission_tokens(eng, rid)
                if want > free_tokens and running:  # alone, a request only needs its blocks to fit
                    eng.note_blocked(rid)
                    break
                n = admit(eng, rid, budget, now)
                if n == 0:
                    break
                free_tokens -= want
                out.add(rid, n)
                budget -= n
        if out.n:
            return
        give_in_order(eng, list(running), DECODE_ALL, out)  # a decode batch is not token-budgeted

    def _order_by_prefix(self, eng: ReplicaEngine) -> None:
        req, kv, waiting = eng.req, eng.kv, eng.waiting
        pl, no = req.prompt_len, req.num_output
        ranked = sorted(range(len(waiting)), key=lambda i: -len(kv.lookup(waiting[i], pl[waiting[i]] + no[waiting[i]])))
        ordered = [waiting[i] for i in ranked]  # sorted() is stable: ties keep arrival order
        waiting.clear()
        waiting.extend(ordered)

    def _unreserved_tokens(self, eng: ReplicaEngine) -> float:
        """Free KV tokens after reserving new_token_ratio of every running request's remaining output."""
        req, kv = eng.req, eng.kv
        mt, no = req.max_tokens, req.num_output
        reserved = float(sum(mt[r] - no[r] for r in eng.running)) * self.new_token_ratio  # as int * float converts
        return kv.num_free * eng.cfg.block_size - reserved

    def _admission_tokens(self, eng: ReplicaEngine, rid: int) -> float:
        """The uncached part of its prompt plus new_token_ratio of the output it may still produce."""
        req = eng.req
        num_tokens = req.prompt_len[rid] + req.num_output[rid]
        cached = len(eng.kv.lookup(rid, num_tokens)) * eng.cfg.block_size
        return float(num_tokens - cached) + float(req.max_tokens[rid] - req.num_output[rid]) * self.new_token_ratio

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        # Admission depends on the running requests' remaining output, which shrinks every step, and LPM
        # order on cache contents that evictions change: only certify when nobody waits or no seat is free.
        if eng.waiting and len(eng.running) < eng.cfg.max_num_seqs:
            return False
        return all_decoding(eng)
