"""How long `servesim report` and `servesim trace` take on a 20,000-request run.

Simulates the chat preset at 20 req/s for 20,000 requests on one H100 replica of Llama-3.1-8B (about
100,000 engine steps and 4 million tokens), then times the report and the trace written from its files.
Prints one line per output: seconds, file size. `make bench-report` runs it.
"""

import sys
import tempfile
import time
from pathlib import Path

from servesim.config import make_config
from servesim.metrics.io import write_result
from servesim.report.build import write_report
from servesim.report.trace import write_trace
from servesim.simulate import run_simulation


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = make_config({}, workload="chat", qps=20, requests=requests, slo_ttft="500ms", slo_tpot="50ms", seed=1)
        result = run_simulation(cfg)
        write_result(result, run)
        steps = result.summary["engine"]["steps"]
        print(f"run: {requests} requests, {steps} steps")
        for name, write in (("report", lambda: write_report([run], Path(tmp) / "report.html")),
                            ("report, 2 runs", lambda: write_report([run, run], Path(tmp) / "report2.html")),
                            ("trace", lambda: write_trace(run, Path(tmp) / "trace.json"))):
            started = time.perf_counter()
            write()
            seconds = time.perf_counter() - started
            out = {"report": "report.html", "report, 2 runs": "report2.html", "trace": "trace.json"}[name]
            size = (Path(tmp) / out).stat().st_size / 1e6
            print(f"{name}: {seconds:.2f} s wall, {size:.1f} MB")


if __name__ == "__main__":
    main()
