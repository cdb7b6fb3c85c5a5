"""Replay the Azure 2023 conversation trace (19,366 requests) on one H100 replica of Llama-3.1-8B.

Prints `<N> simulated req/s` (wall clock, median of --repeat runs) and the peak memory of the process.

    python benchmarks/bench_sim.py [--trace PATH] [--repeat 3] [--no-spans]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from servesim.config import RunConfig
from servesim.simulate import run_simulation
from servesim.workload.traces import load_trace

DEFAULT_TRACE = Path(__file__).resolve().parents[2] / "shared/data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--gpu", default="h100")
    args = ap.parse_args()
    if not Path(args.trace).exists():
        sys.exit(f"skipped: trace {args.trace} is absent (the benchmark reads ../shared/data)")
    workload = load_trace(args.trace)
    cfg = RunConfig(model=args.model, gpu=args.gpu, trace=args.trace)
    rates, cpu_rates = [], []
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_simulation(cfg, workload=workload)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        rates.append(len(workload) / wall)
        cpu_rates.append(len(workload) / cpu)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    print(f"{len(workload)} requests, {s['engine']['steps']} steps, TTFT p50 {s['latency_s']['ttft']['p50'] * 1e3:.1f} ms")
    print(f"runs: {', '.join(f'{r:,.0f}' for r in rates)} req/s")
    # CPU time is the steadier figure when other processes share the machine.
    print(f"per CPU second: {statistics.median(cpu_rates):,.0f} req/s; load average {os.getloadavg()[0]:.2f}")
    print(f"{statistics.median(rates):,.0f} simulated req/s")
    print(f"peak memory {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
