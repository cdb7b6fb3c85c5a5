"""What a cluster is made of: pools of identical replicas (GPU, tensor parallelism, count) and a router.

Co-located serving is one pool of `--replicas N` replicas, each doing prefill and decode. Disaggregated
serving (`xPyD`) is a prefill pool and a decode pool, written `GPU:TPxN` (`h100:2x3` = 3 replicas of
TP=2 on H100), with KV caches moving from one to the other over a link (hardware/links.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servesim.errors import ServesimError

_POOL = re.compile(r"^\s*([^:\s]+)\s*:\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class PoolSpec:
    role: str  # "colocated", "prefill" or "decode"
    gpu: str
    tp: int
    count: int
    pp: int = 1  # the run's --pp, the same for every pool

    @property
    def per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.per_replica * self.count

    def label(self) -> str:
        return f"{self.gpu}:{self.tp}x{self.count}" + (f" PP={self.pp}" if self.pp > 1 else "")


def parse_pool(text: str, role: str, where: str, pp: int = 1) -> PoolSpec:
    """`GPU:TPxN`, e.g. `h100:1x3`; `where` names the flag or file:line for the error."""
    m = _POOL.match(str(text))
    if not m:
        raise ServesimError(f"{where} {text!r} is not GPU:TPxN (e.g. h100:2x3 = three TP=2 replicas on H100)")
    gpu, tp, count = m.group(1), int(m.group(2)), int(m.group(3))
    if tp < 1 or count < 1:
        raise ServesimError(f"{where} {text!r}: TP and replica count must be >= 1")
    return PoolSpec(role, gpu, tp, count, pp)
