"""Two small simulated runs for the report and trace tests, written once per session.

`light`: 300 chat requests at 8 req/s, every SLO met. `heavy`: 300 at 30 req/s into a tiny KV cache, so it
queues, preempts, rejects one overlong request and fails its SLOs. Together they cover both verdicts.
"""

import shutil

import pytest

from servesim.config import make_config
from servesim.metrics.io import write_result
from servesim.simulate import run_simulation

RUNS = {
    "light": dict(workload="chat", qps=8, requests=300, seed=3),
    "heavy": dict(workload="chat", qps=30, requests=300, num_gpu_blocks=600, max_model_len=8192, seed=4),
}
SLO = dict(slo_ttft="200ms", slo_tpot="20ms")


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for name, settings in RUNS.items():
        result = run_simulation(make_config({}, **settings, **SLO))
        dirs[name] = write_result(result, root / name)
    return dirs


@pytest.fixture
def copy_run(run_dirs, tmp_path):
    """A scratch copy of a run directory to damage."""
    made = []

    def copy(name="light"):
        made.append(name)
        target = tmp_path / f"{name}-copy{len(made)}"
        shutil.copytree(run_dirs[name], target)
        return target
    return copy


def _expected_traces(runs_with_steps: int, runs: int, slo: bool = True) -> dict[str, int]:
    """What each chart must draw: one curve per run per panel (and per percentile, per SLO line)."""
    out = {"latency-cdfs": 4 * runs, "latency-over-time": 6 * runs,
           "throughput-over-time": (3 if slo else 2) * runs}
    if runs_with_steps:
        out["engine-state"] = 3 * runs_with_steps
    out.update({f"step-composition-{i}": 2 for i in range(runs_with_steps)})
    return out


@pytest.fixture
def expected_traces():
    return _expected_traces


@pytest.fixture
def measured_run(copy_run):
    """A run directory as `servesim measure` writes it (issue 3): the simulator's requests.parquet schema
    without what a client cannot see (queueing, preemptions: NaN and -1), no steps.parquet, and a summary.json
    with its own layout (`kind: measured`, request-level `metrics`, no latency percentiles)."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = copy_run("light")
    (run / "steps.parquet").unlink()
    table = pq.read_table(run / "requests.parquet")
    n = table.num_rows
    table = table.set_column(table.column_names.index("queue_s"), "queue_s", pa.array(np.full(n, np.nan)))
    table = table.set_column(table.column_names.index("preemptions"), "preemptions", pa.array(np.full(n, -1)))
    pq.write_table(table, run / "requests.parquet")
    doc = json.loads((run / "summary.json").read_text())
    measured = {"servesim_version": doc["servesim_version"], "seed": doc["seed"], "kind": "measured",
                "config": {"url": "http://localhost:8000", "workload": "chat"}, "meta": {"server": {}},
                "summary": {"metrics": {"completed": float(n)}, "requests": {"total": n, "failed": 0},
                            "stream": {"events": 0, "tokens": 0}}}
    (run / "summary.json").write_text(json.dumps(measured))
    return run
