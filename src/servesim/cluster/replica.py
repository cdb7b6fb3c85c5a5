"""A replica in a cluster: its engine, its place (pool, GPU, TP), and what a router may see of it."""

from __future__ import annotations

from dataclasses import dataclass

from servesim.engine.engine import ReplicaEngine


@dataclass
class Replica:
    index: int  # position in the cluster (result files' `replica` column)
    role: str  # colocated, prefill or decode
    gpu: str
    tp: int
    engine: ReplicaEngine
    next_at: float = 0.0  # when its next step may start: the end of the step (or planned span) in flight
    finishing: int = 0  # requests the step in flight finishes at next_at (the engine already applied it)
    incoming: int = 0  # requests routed here whose KV is still on the link

    # --- the router's view at time `now` ---

    def outstanding(self, now: float) -> int:
        eng = self.engine
        n = len(eng.running) + len(eng.waiting) + self.incoming
        return n + self.finishing if now < self.next_at else n

    def kv_usage(self, now: float) -> float:
        eng = self.engine
        kv = eng.kv
        if eng.pending is not None:
            used = eng.kv_used_at(now)
        else:
            used = eng.step_kv_used if now < self.next_at else kv.num_used
        return used / kv.num_usable if kv.num_usable else 0.0

    def describe(self) -> dict:
        cfg = self.engine.cfg
        return {"replica": self.index, "role": self.role, "gpu": self.gpu, "tp": self.tp,
                "num_gpu_blocks": cfg.num_gpu_blocks, "max_num_batched_tokens": cfg.max_num_batched_tokens,
                "max_num_seqs": cfg.max_num_seqs}
