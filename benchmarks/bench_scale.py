"""Simulation speed at scale (issue 8): how cost grows with requests, and every policy side by side.

    python benchmarks/bench_scale.py scale [--requests 10000,100000] [--replicas 16] [--write]
    python benchmarks/bench_scale.py policies [--requests 20000]

`scale`: the chat preset at 5 req/s per replica on N replicas of Llama-3.1-8B/H100 behind least-outstanding
routing, each size in a fresh process so that its peak memory is its own. `policies`: the same chat traffic on
one replica under each scheduling policy, and on a 1P1D disaggregated pair. Prints a Markdown table: simulated
requests per wall second and per CPU second (the steadier figure on a shared machine), and peak memory.
`--write`: each run also writes its result files (what `servesim simulate -o DIR` does) into a temporary
directory; the times and peak memory then include writing, and the table adds the writing time and file sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servesim.config import make_config
from servesim.simulate import run_simulation
from servesim.workload.build import build_workload

POLICIES = ("vllm-v1", "sarathi", "splitfuse", "orca", "static", "sglang", "priority", "fair")


def measure(settings: dict) -> dict:
    write = settings.pop("write", False)
    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=1, **settings)
    workload = build_workload(cfg)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_simulation(cfg, workload=workload)
    out = {"requests": len(workload), "completed": result.summary["requests"]["completed"]}
    if write:
        from servesim.metrics.io import write_result  # as `servesim simulate` does: pyarrow loads after the run

        with tempfile.TemporaryDirectory() as tmp:
            written = time.perf_counter()
            write_result(result, tmp)
            out["write_s"] = time.perf_counter() - written
            out["files_mib"] = {p.name: p.stat().st_size / 2**20 for p in sorted(Path(tmp).iterdir())}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {**out, "wall_s": wall, "cpu_s": cpu, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_process(settings: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "one", json.dumps(settings)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, m: dict) -> str:
    line = (f"| {label} | {m['requests']:,} | {m['wall_s']:.1f} | {m['requests'] / m['wall_s']:,.0f} | "
            f"{m['requests'] / m['cpu_s']:,.0f} | {m['peak_mib']:,.0f} |")
    if "write_s" in m:
        files = m["files_mib"]
        line += f" {m['write_s']:.1f} | {files['requests.parquet']:,.1f} | {files['steps.parquet']:,.1f} |"
    return line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("scale", "policies", "one"))
    ap.add_argument("settings", nargs="?")
    ap.add_argument("--requests", default=None)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--write", action="store_true", help="also write the result files (scale only)")
    args = ap.parse_args()
    if args.what == "one":
        print(json.dumps(measure(json.loads(args.settings))))
        return
    write = args.write and args.what == "scale"
    print("| run | requests | wall s | req/s wall | req/s per CPU second | peak MiB |"
          + (" of which writing s | requests.parquet MiB | steps.parquet MiB |" if write else ""))
    print("|---|---|---|---|---|---|" + ("---|---|---|" if write else ""))
    if args.what == "scale":
        for n in (int(x) for x in (args.requests or "10000,100000").split(",")):
            m = in_fresh_process({"requests": n, "qps": 5.0 * args.replicas, "replicas": args.replicas,
                                  "router": "least-outstanding", "write": write})
            print(row(f"{args.replicas} replicas, least-outstanding", m), flush=True)
    else:
        n = int(args.requests or 20000)
        for policy in POLICIES:
            print(row(f"1 replica, `--policy {policy}`", in_fresh_process({"requests": n, "qps": 5.0, "policy": policy})),
                  flush=True)
        print(row("1P1D, `--prefill-pool h100:1x1 --decode-pool h100:1x1`",
                  in_fresh_process({"requests": n, "qps": 5.0, "prefill_pool": "h100:1x1", "decode_pool": "h100:1x1"})))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
