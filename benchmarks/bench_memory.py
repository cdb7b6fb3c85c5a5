"""Where a cluster run's memory goes (issue 8): resident memory at each stage of run_simulation.

    python benchmarks/bench_memory.py [--requests 100000] [--replicas 16]

The chat preset at 5 req/s per replica on N replicas of Llama-3.1-8B/H100 behind least-outstanding routing (the
configuration of `bench_scale.py scale`). Prints RSS (from /proc/self/statm, so Linux only) and the peak so
far after building the workload, after the run, after gathering the replicas' results, and after the summary.
"""

from __future__ import annotations

import argparse
import resource

import servesim.simulate as simulate
from servesim.config import make_config
from servesim.workload.build import build_workload


def mark(label: str) -> None:
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label:34s} RSS {rss:7.0f} MiB   peak so far {peak:7.0f} MiB", flush=True)


def traced(name: str):
    inner = getattr(simulate, name)

    def call(*args, **kwargs):
        mark(f"before {name}")
        out = inner(*args, **kwargs)
        mark(f"after {name}")
        return out

    return call


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=16)
    args = ap.parse_args()
    for name in ("combine_colocated", "summarize"):
        setattr(simulate, name, traced(name))
    mark("start")
    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=1, requests=args.requests,
                      qps=5.0 * args.replicas, replicas=args.replicas, router="least-outstanding")
    workload = build_workload(cfg)
    mark("workload built")
    simulate.run_simulation(cfg, workload=workload)
    mark("done")


if __name__ == "__main__":
    main()
