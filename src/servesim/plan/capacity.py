"""A candidate's capacity: the highest request rate at which one replica still meets the SLO attainment target.

Rates live on a fixed geometric grid below the candidate's throughput bound, rate_k = bound / (1 + tol)^k,
and the search only ever asks "does rate_k pass?": it gallops down from bound/sqrt(2) (k = s/2, s, 2s, ... with s steps per halving) until a
rate passes, then bisects between the last failure and the first pass. Because the path depends on nothing
but pass/fail answers on a grid that depends on neither the SLO nor the target traffic, a looser SLO (which
can only turn failures into passes) never yields a lower capacity, and the same probes serve every target
rate and SLO from the cache. The grid's spacing is the answer's resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from servesim.metrics.summary import SLO
from servesim.plan.probe import Probe

FLOOR_RATIO = 1000.0  # give up below bound / 1000: the SLO is out of reach at any useful load


@dataclass(frozen=True)
class Criterion:
    slo: SLO
    attainment: float  # fraction of requests that must meet every SLO

    def passes(self, probe: Probe) -> bool:
        return probe.attainment(self.slo) >= self.attainment


@dataclass
class Capacity:
    rate: float  # highest grid rate that passed; 0 if none
    failed_rate: float  # lowest grid rate above it that failed (or the bound, never simulated)
    probes: list[tuple[int, float, bool]] = field(default_factory=list)  # (grid index, rate, passed) in order


def grid_rate(bound: float, tolerance: float, k: int) -> float:
    return bound / (1.0 + tolerance) ** k


def search_capacity(probe_at: Callable[[float], Probe], bound: float, criterion: Criterion,
                    tolerance: float) -> Capacity:
    step = max(1, math.ceil(math.log(2.0) / math.log1p(tolerance)))
    k_max = math.ceil(math.log(FLOOR_RATIO) / math.log1p(tolerance))
    trail: list[tuple[int, float, bool]] = []

    def passes(k: int) -> bool:
        rate = grid_rate(bound, tolerance, k)
        ok = criterion.passes(probe_at(rate))
        trail.append((k, rate, ok))
        return ok

    failed, k = 0, max(1, step // 2)  # k = 0 is the bound itself: no schedule beats it, so it fails unprobed
    while not passes(k):
        failed = k
        if k >= k_max:
            return Capacity(0.0, grid_rate(bound, tolerance, failed), trail)
        k = min(2 * k, k_max)
    passed = k
    while passed - failed > 1:
        mid = (passed + failed) // 2
        if passes(mid):
            passed = mid
        else:
            failed = mid
    return Capacity(grid_rate(bound, tolerance, passed), grid_rate(bound, tolerance, failed), trail)
