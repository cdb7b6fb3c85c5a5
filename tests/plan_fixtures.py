"""A small plan (with a winner), a plan whose target no deployment meets, and a small sweep, written once per
session for the report tests. Each takes about a second: tiny probes, two GPU types, serial executor."""

import pytest

from servesim.config import RunConfig
from servesim.plan.evaluate import evaluate
from servesim.plan.executors import SerialExecutor
from servesim.plan.output import write_plan
from servesim.plan.prices import load_prices
from servesim.plan.search import PlanRequest, plan
from servesim.plan.space import SearchSpace
from servesim.plan.sweep import load_sweep, run_sweep, sweep_rows, write_sweep

SMALL = dict(probe_requests=50, probe_seconds=20.0, verify_requests=50, verify_seconds=20.0, top=2, window=2,
             exhaustive=True)
SWEEP = """model: llama-3.1-8b
gpu: h100
workload: {workload: chat, requests: 150}
slo: {ttft: 500ms, tpot: 30ms}
grid:
  qps: [5, 20, 40]
  max_num_seqs: [64, 256]
"""


def _plan(out, qps, max_gpus):
    base = RunConfig(model="llama-3.1-8b", workload="chat", slo_ttft=1.0, slo_tpot=0.05, seed=3)
    space = SearchSpace(gpus=("a100", "l40s"), tp=(1,), max_num_seqs=(32, 256), max_num_batched_tokens=(2048,))
    executor = SerialExecutor(evaluate)
    try:
        result = plan(PlanRequest(base, qps, space, load_prices(), max_gpus=max_gpus, **SMALL), executor, None)
    finally:
        executor.close()
    write_plan(result, out)
    return out


@pytest.fixture(scope="session")
def planner_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("planner")
    (root / "sweep.yaml").write_text(SWEEP)
    spec = load_sweep(root / "sweep.yaml")
    executor = SerialExecutor(evaluate)
    try:
        points, probes, interrupted = run_sweep(spec, executor)
    finally:
        executor.close()
    write_sweep(spec, sweep_rows(spec, points, probes), root / "sweep", interrupted)
    return {"plan": _plan(root / "plan", 12.0, 64), "no-winner": _plan(root / "no-winner", 40.0, 1),
            "sweep": root / "sweep"}
