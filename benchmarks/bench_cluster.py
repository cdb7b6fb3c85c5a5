"""Cluster simulation speed: 20,000 chat-preset requests at 20 req/s on three 4-GPU clusters of Llama-3.1-8B/H100.

    .venv/bin/python benchmarks/bench_cluster.py [--clock calibrated|roofline]

Prints simulated requests per wall second and per CPU second (the steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import time

from servesim.config import make_config
from servesim.simulate import run_simulation
from servesim.workload.build import build_workload

CLUSTERS = {
    "--replicas 4 --router round-robin": dict(replicas=4, router="round-robin"),
    "--replicas 4 --router least-outstanding": dict(replicas=4, router="least-outstanding"),
    "--prefill-pool h100:1x1 --decode-pool h100:1x3 --router least-outstanding":
        dict(prefill_pool="h100:1x1", decode_pool="h100:1x3", router="least-outstanding"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clock", default="calibrated", choices=("calibrated", "roofline"))
    args = ap.parse_args()
    base = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", qps=20, requests=20000, seed=1,
                       cost_model=args.clock)
    workload = build_workload(base)
    print(f"| cluster ({args.clock} clock) | wall req/s | req/s per CPU second |")
    print("|---|---|---|")
    for flags, kw in CLUSTERS.items():
        wall, cpu = time.perf_counter(), time.process_time()
        run_simulation(base.__class__(**{**base.__dict__, **kw}), workload=workload)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"| `{flags}` | {len(workload) / wall:,.0f} | {len(workload) / cpu:,.0f} |")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
