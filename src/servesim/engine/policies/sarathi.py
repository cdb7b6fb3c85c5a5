"""Sarathi-Serve's stall-free batching (Agrawal et al., OSDI 2024).

Each step has a fixed token budget, the chunk size (default 512 tokens). It goes first to the decodes of
every running request, then to the prefills already in progress (chunked), then to new requests, first come
first served, the last admitted prompt cut to what is left. Decodes never wait behind a prompt: a prompt
only ever takes the tokens the decodes left over. Admission, block accounting and recompute preemption are
vLLM's (Sarathi-Serve is built on vLLM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.policies.common import admit, all_decoding, fcfs_admission_closed, give_in_order, need

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine

SARATHI_CHUNK = 512


class SarathiPolicy(Policy):
    name: ClassVar[str] = "sarathi"

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {"max_num_batched_tokens": SARATHI_CHUNK}  # the chunk size
    reserve_full: ClassVar[bool] = True  # vLLM's admission: the whole sequence must fit before the first chunk

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        budget = eng.cfg.max_num_batched_tokens
        # 1. decodes, 2. prefills in progress; in running order within each.
        decodes: list[int] = []
        prefills: list[int] = []
        for r in eng.running:  # one pass, in running order within each
            wanted = need(eng, r)
            if wanted == 1:
                decodes.append(r)
            elif wanted > 1:
                prefills.append(r)
        budget = give_in_order(eng, decodes + prefills, budget, out)
        if eng.preempted_now:  # as in vLLM, a step that preempted admits nobody
            return
        # 3. new requests, first come first served.
        waiting, running = eng.waiting, eng.running
        while waiting and budget > 0 and len(running) < eng.cfg.max_num_seqs:
            rid: int = waiting[0]  # typed: the queue is Any
            n = admit(eng, rid, budget, now, reserve_full=self.reserve_full)
            if n == 0:
                break
            out.add(rid, n)
            budget -= n

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        b = len(eng.running)
        budget = eng.cfg.max_num_batched_tokens
        return b <= budget and all_decoding(eng) and fcfs_admission_closed(eng, budget - b)
