"""Routers: which replica of a pool a new request goes to.

A router sees each replica through its `outstanding(now)` and `kv_usage(now)` (cluster/replica.py): outstanding
requests and KV usage as they stand at the routing instant (a step in flight still counts the requests it will
finish). Names as on the CLI:
round-robin, least-outstanding, least-kv, power-of-two, prefix-affinity.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np

from servesim.cluster.replica import Replica
from servesim.errors import choices_error

PREFIX_AFFINITY_LOAD_CAP = 4  # default: how many more outstanding requests than the least loaded replica


class Router:
    """What the cluster driver calls at each arrival (a shared base: compiled, the call is native)."""

    name: ClassVar[str] = ""

    def choose(self, rid: int, replicas: list[Replica], now: float) -> int:
        raise NotImplementedError


class RoundRobinRouter(Router):
    name: ClassVar[str] = "round-robin"
    stateless: ClassVar[bool] = True  # never looks at the replicas

    def __init__(self, n: int, **_):
        self.n = n
        self._next = 0

    def choose(self, rid: int, replicas, now: float) -> int:
        i = self._next
        self._next = (i + 1) % self.n
        return i


class LeastOutstandingRouter(Router):
    """Fewest requests queued or running (lowest index on ties): vLLM production-stack's and llm-d's load signal."""

    name: ClassVar[str] = "least-outstanding"

    def __init__(self, n: int, **_):
        pass

    def choose(self, rid: int, replicas: list[Replica], now: float) -> int:
        # Typed and a plain loop: compiled, each replica's load is a native call (it runs at every arrival).
        best, least = 0, -1
        for i, replica in enumerate(replicas):
            load = replica.outstanding(now)
            if load < least or least < 0:
                best, least = i, load
        return best  # the first of the least loaded


class LeastKVRouter(Router):
    """Lowest KV-cache usage, then fewest outstanding requests (llm-d's kv-cache-utilization scorer)."""

    name: ClassVar[str] = "least-kv"

    def __init__(self, n: int, **_):
        pass

    def choose(self, rid: int, replicas, now: float) -> int:
        return min(range(len(replicas)), key=lambda i: (replicas[i].kv_usage(now), replicas[i].outstanding(now), i))


class PowerOfTwoRouter(Router):
    """Two replicas drawn at random, the less loaded one wins (Mitzenmacher's power of two choices)."""

    name: ClassVar[str] = "power-of-two"

    def __init__(self, n: int, seed: int = 0, **_):
        self.n = n
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))

    def choose(self, rid: int, replicas, now: float) -> int:
        if self.n == 1:
            return 0
        a, b = (int(x) for x in self._rng.choice(self.n, size=2, replace=False))
        la, lb = replicas[a].outstanding(now), replicas[b].outstanding(now)
        return a if (la, a) < (lb, b) else b


class PrefixAffinityRouter(Router):
    """The replica most likely to hold the request's prefix, unless that would overload it.

    Like SGLang's cache-aware router, it remembers per replica which prefixes it sent there (a bounded LRU
    of 512-token prefix blocks, about that replica's KV capacity) rather than reading the replicas' caches,
    so a prefix still being computed already attracts its followers. Among replicas with at most
    `load_cap` more outstanding requests than the least loaded one, the longest remembered prefix wins
    (fewer outstanding, then lower index, on ties); with no prefix anywhere, the least loaded wins.
    """

    name: ClassVar[str] = "prefix-affinity"

    def __init__(self, n: int, prefix_ids=None, prefix_block_tokens: int = 512, capacity_tokens=None,
                 load_cap: int = PREFIX_AFFINITY_LOAD_CAP, **_):
        self.prefix_ids = prefix_ids
        self.load_cap = load_cap
        self._seen: list[OrderedDict[Any, None]] = [OrderedDict() for _ in range(n)]
        caps = capacity_tokens or [1 << 40] * n
        self._cap = [max(1, int(c) // prefix_block_tokens) for c in caps]

    def _match(self, i: int, chain) -> int:
        seen = self._seen[i]
        k = 0
        for block in chain:
            if block not in seen:
                break
            k += 1
        return k

    def choose(self, rid: int, replicas, now: float) -> int:
        loads = [r.outstanding(now) for r in replicas]
        floor = min(loads)
        chain = self.prefix_ids[rid] if self.prefix_ids is not None else None
        if not chain:
            return min(range(len(replicas)), key=lambda i: (loads[i], i))
        eligible = [i for i in range(len(replicas)) if loads[i] <= floor + self.load_cap]
        best = min(eligible, key=lambda i: (-self._match(i, chain), loads[i], i))
        seen = self._seen[best]
        for block in chain:
            seen[block] = None
            seen.move_to_end(block)
        while len(seen) > self._cap[best]:
            seen.popitem(last=False)
        return best


ROUTERS = {cls.name: cls for cls in (RoundRobinRouter, LeastOutstandingRouter, LeastKVRouter, PowerOfTwoRouter,
                                     PrefixAffinityRouter)}


def check_router(name: str) -> None:
    if name not in ROUTERS:
        raise choices_error("router", name, list(ROUTERS))


def make_router(name: str, n: int, **options):
    check_router(name)
    return ROUTERS[name](n, **options)
