"""Where a cluster run's time goes (issue 8): wall and CPU seconds of each phase of run_simulation.

    python benchmarks/bench_phases.py [--requests 100000] [--replicas 16]
    python benchmarks/bench_phases.py --trace PATH [--repeat 3]   # one replica replaying a trace (bench_sim's run)

The configuration of `bench_scale.py scale` (chat preset, 5 req/s per replica, Llama-3.1-8B/H100,
least-outstanding routing). Phases: building the workload (bench_scale times the run without it), the request
table, the replicas and their clocks, the event loop (ClusterRun.run), gathering the replicas' results, and the
metrics (the ITL pass, its percentiles, the step statistics, the cluster summary).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import servesim.metrics.steps as steps
import servesim.metrics.summary as summary
import servesim.simulate as simulate
from servesim.config import RunConfig, make_config
from servesim.workload.traces import load_trace

SPENT: dict[str, list[float]] = {}  # phase -> [wall s, CPU s]


def timed(module, name: str, label: str) -> None:
    inner = getattr(module, name)

    def call(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent = SPENT.setdefault(label, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += time.process_time() - cpu

    setattr(module, name, call)


class TimedRun:
    """ClusterRun with its run() timed (a compiled class cannot be patched or subclassed from Python)."""

    def __init__(self, *args):
        self._run = ClusterRun(*args)

    def run(self, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self._run.run(*args)
        finally:
            SPENT["event loop (ClusterRun.run)"] = [time.perf_counter() - wall, time.process_time() - cpu]

    def __getattr__(self, name):
        return getattr(self._run, name)


ClusterRun = simulate.ClusterRun


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--trace", help="replay this trace on one replica instead (the configuration of bench_sim.py)")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the table is the last one's")
    args = ap.parse_args()
    if args.trace:
        cfg = RunConfig(model="llama-3.1-8b", gpu="h100", trace=args.trace)
        workload = load_trace(args.trace)
        size = f"{len(workload):,} requests of {os.path.basename(args.trace)}, 1 replica"
    else:
        cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=1, requests=args.requests,
                          qps=5.0 * args.replicas, replicas=args.replicas, router="least-outstanding")
        timed(simulate, "build_workload", "workload")
        workload = simulate.build_workload(cfg)
        size = f"{args.requests:,} requests, {args.replicas} replicas"
    for module, name, label in ((simulate, "_table", "request table"), (simulate, "_build_pool", "replicas and clocks"),
                                (simulate, "combine_colocated", "gathering results"),
                                (summary, "itl_weighted", "metrics: ITL pass"),
                                (summary, "weighted_distribution", "metrics: ITL percentiles"),
                                (steps.StepStatsPass, "add", "metrics: step statistics (inside the ITL pass)"),
                                (simulate, "summarize", "metrics: summary (all of the above three and more)"),
                                (simulate, "cluster_summary", "metrics: cluster summary")):
        timed(module, name, label)
    simulate.ClusterRun = TimedRun
    for _ in range(args.repeat):
        for spent in SPENT.values():
            spent[:] = [0.0, 0.0]
        wall, cpu = time.perf_counter(), time.process_time()
        simulate.run_simulation(cfg, workload=workload)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"| phase ({size}) | wall s | CPU s |")
    print("|---|---|---|")
    for label, (w, c) in SPENT.items():
        print(f"| {label} | {w:.3f} | {c:.3f} |")
    print(f"| run_simulation (all but the workload) | {wall:.3f} | {cpu:.3f} |")
    print(f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
