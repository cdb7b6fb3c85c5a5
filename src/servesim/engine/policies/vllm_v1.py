"""vLLM v1's scheduler (vllm/v1/core/sched/scheduler.py, 0.32), its decisions without its plumbing.

No prefill or decode phases: every request wants `num_tokens - num_computed` tokens. One token budget per
step goes to running requests first, in order, then to waiting ones, first come first served. A running
request that cannot get blocks preempts the last running request (recompute) until it fits or preempts
itself; a step that preempted admits nobody. Chunked prefill is the budget cutting a long prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.policies.base import Policy, Schedule
from servesim.vec_types import i64

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class VllmV1Policy(Policy):
    name: ClassVar[str] = "vllm-v1"  # ClassVar: a class attribute when compiled too

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        cfg, req, kv = eng.cfg, eng.req, eng.kv
        running, waiting = eng.running, eng.waiting
        nc, pl, no = req.num_computed, req.prompt_len, req.num_output
        # i64 locals: compiled, plain machine arithmetic (an int local is tagged, checked at every operation)
        budget: i64 = cfg.max_num_batched_tokens
        max_model_len: i64 = cfg.max_model_len
        # The threshold keeps one long prompt from starving others; alone, a request may use the whole budget.
        threshold: i64 = cfg.long_prefill_token_threshold if len(running) + len(waiting) > 1 else 0
        preempted = False

        i: i64 = 0
        while i < len(running) and budget > 0:
            rid = running[i]
            computed = nc[rid]
            num_tokens = pl[rid] + no[rid]
            wanted = n = num_tokens - computed
            if 0 < threshold < wanted:
                n = threshold
            if n > budget:
                n = budget
            if n > max_model_len - computed - 1:  # never past the context window
                n = max_model_len - computed - 1
            if n <= 0:
                i += 1
                continue
            fits = True
            while not kv.extend(rid, computed + n, num_tokens):
                victim = running.pop()
                eng.preempt(victim)
                preempted = True
                if victim == rid:
                    fits = False
                    break
            if not fits:
                break
            out.add(rid, n)  # a victim is always after rid in running, so never already scheduled
            budget -= n
            i += 1

        if preempted:
            return
        while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
            head: int = waiting[0]  # a new name: `rid = waiting[0]` would make rid Any (the queue is Any)
            num_tokens = pl[head] + no[head]
            hits = kv.lookup(head, num_tokens)
            cached = len(hits) * cfg.block_size
            computed = eng.ready_tokens(head, cached)
            n = num_tokens - computed
            if 0 < threshold < n:
                n = threshold
            if not cfg.enable_chunked_prefill and n > budget:
                break
            n = min(n, budget)
            if not kv.admit(head, hits, n + computed - cached, num_tokens, max_model_len,
                            apply_watermark=bool(running)):
                eng.note_blocked(head)
                break
            eng.admitted(head, computed, now)
            out.add(head, n)
            budget -= n

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        """True when the next step gives every running request exactly one decode token and admits no one."""
        cfg, req = eng.cfg, eng.req
        running = eng.running
        b = len(running)
        if b > cfg.max_num_batched_tokens:
            return False
        nc, pl, no = req.num_computed, req.prompt_len, req.num_output
        for rid in running:
            if nc[rid] != pl[rid] + no[rid] - 1:
                return False
        if eng.waiting and b < cfg.max_num_seqs and b < cfg.max_num_batched_tokens and not eng.head_blocked():
            return False
        return True
