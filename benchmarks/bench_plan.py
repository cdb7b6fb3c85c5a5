"""Planner speed: Llama-3.1-70B on the chat preset at 20 req/s, TTFT 1 s / TPOT 60 ms for 90% of requests,
over 4 GPU types x TP {1,2,4,8} x max_num_seqs {64,128,256,512} x max_num_batched_tokens
{2048,4096,8192,16384} = 256 co-located candidate configurations, no results cache; `--disagg on` adds the
xPyD units of the same GPU types, TPs and knobs (at most 4 replicas per pool and 8 GPUs per unit). Prints the
wall time and what the search did. Target (issue 6): under 2 minutes on the 2-core development machine.

    .venv/bin/python benchmarks/bench_plan.py [--workers N] [--exhaustive] [--disagg on] [--slo-tpot 0.03]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from servesim.config import RunConfig
from servesim.plan.cache import ResultCache
from servesim.plan.evaluate import evaluate
from servesim.plan.executors import make_executor
from servesim.plan.prices import load_prices
from servesim.plan.search import PlanRequest, plan
from servesim.plan.space import SearchSpace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--exhaustive", action="store_true", help="simulate every candidate that fits (no bound pruning)")
    ap.add_argument("--probe-requests", type=int, default=400)
    ap.add_argument("--slo-tpot", type=float, default=0.060, help="TPOT SLO in seconds (tighter favours xPyD units)")
    ap.add_argument("--disagg", default="off", choices=("off", "on", "only"),
                    help="also search disaggregated xPyD units (at most 8 GPUs and 4 replicas per pool)")
    args = ap.parse_args()
    base = RunConfig(model="llama-3.1-70b", workload="chat", slo_ttft=1.0, slo_tpot=args.slo_tpot, seed=0)
    space = SearchSpace(gpus=("h100", "h200", "a100", "b200"), tp=(1, 2, 4, 8), max_num_seqs=(64, 128, 256, 512),
                        max_num_batched_tokens=(2048, 4096, 8192, 16384), disagg=args.disagg)
    req = PlanRequest(base, 20.0, space, load_prices(), probe_requests=args.probe_requests, exhaustive=args.exhaustive)
    executor = make_executor("local", evaluate, args.workers)
    started = time.perf_counter()
    try:
        result = plan(req, executor, ResultCache(None))
    finally:
        executor.close()  # reaps the workers, so their CPU time is counted below
    wall = time.perf_counter() - started
    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    counts: dict[str, int] = {}
    for p in result.points:
        counts[p.status] = counts.get(p.status, 0) + 1
    simulated = sum(1 for p in result.points if p.capacity)
    simulated_units = sum(1 for p in result.points if p.capacity and p.candidate.mode == "disaggregated")
    probes = sum(len(p.capacity.probes) for p in result.points if p.capacity)
    w = result.winner
    modes: dict[str, int] = {}
    for p in result.points:
        modes[p.candidate.mode] = modes.get(p.candidate.mode, 0) + 1
    left = f" (+{result.left_out} xPyD units with a pool that does not fit, not listed)" if result.left_out else ""
    print(f"{len(result.points)} candidate configs {modes}{left}, {simulated} simulated ({simulated_units} xPyD "
          f"units; {probes} capacity probes of {req.probe_requests} requests), {counts}")
    if w:
        v = w.verification
        print(f"winner: {w.replicas} x {w.id} = {w.gpus} GPUs, ${w.cost_per_hour:.2f}/h, "
              f"capacity {w.capacity.rate:.2f} req/s per replica; verified over {w.simulated_replicas} replicas at "
              f"{v.rate:g} req/s: {v.attainment(req.slo):.1%} within the SLOs")
    print(f"{wall:.1f} s wall with {executor.workers} workers, {cpu:.1f} CPU seconds, load average "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
