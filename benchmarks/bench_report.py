"""How long `servesim report` and `servesim trace` take on a 20,000-request run.

Simulates the chat preset at 20 req/s for 20,000 requests on one H100 replica of Llama-3.1-8B (about
100,000 engine steps and 4 million output tokens), then times the report (one run, and two overlaid) and
the trace written from its files. Prints per output the median wall and CPU seconds of --repeat runs and
the file size. `make bench-report` runs it.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from servesim.config import make_config
from servesim.metrics.io import write_result
from servesim.report.build import write_report
from servesim.report.trace import write_trace
from servesim.simulate import run_simulation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a, b = tmp / "a", tmp / "b"
        for out, qps in ((a, 20), (b, 25)):
            cfg = make_config({}, workload="chat", qps=qps, requests=args.requests, slo_ttft="500ms",
                              slo_tpot="50ms", seed=1)
            result = run_simulation(cfg)
            write_result(result, out)
            print(f"run {out.name}: {args.requests} requests at {qps} req/s, {result.summary['engine']['steps']} steps")
        jobs = (("report, 1 run", tmp / "r1.html", lambda out: write_report([a], out)),
                ("report, 2 runs", tmp / "r2.html", lambda out: write_report([a, b], out)),
                ("trace", tmp / "t.json", lambda out: write_trace(a, out)))
        for name, out, job in jobs:
            walls, cpus = [], []
            for _ in range(args.repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                job(out)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            print(f"{name}: {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU "
                  f"(median of {args.repeat}), {out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
