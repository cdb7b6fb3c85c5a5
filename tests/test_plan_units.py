"""Planner parts on their own: the capacity search, frontiers, prices, the vLLM command line, the cache,
sweeps, and the CLI's exit codes."""

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from servesim.cli import app
from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.hardware.catalog import list_devices
from servesim.metrics.summary import SLO
from servesim.plan.cache import ResultCache
from servesim.plan.capacity import Criterion, grid_rate, search_capacity
from servesim.plan.pareto import frontier
from servesim.plan.prices import load_prices
from servesim.plan.probe import Probe, ProbeLength
from servesim.plan.space import Candidate
from servesim.plan.vllm_command import vllm_serve

runner = CliRunner()


def fake_probe(passing_rates):
    """A probe whose every request meets the SLO exactly at the rates in `passing_rates` (a predicate)."""
    def probe_at(rate):
        ok = passing_rates(rate)
        return Probe(rate, {"duration_s": 1.0}, np.array([0.1 if ok else 9.0]), np.array([np.nan]))
    return probe_at


CRIT = Criterion(SLO(ttft=1.0), 0.9)


@pytest.mark.parametrize("capacity", [0.3, 1.0, 3.7, 9.99])
def test_capacity_search_finds_the_grid_point_below_a_threshold(capacity):
    bound, tol = 10.0, 0.05
    cap = search_capacity(fake_probe(lambda r: r <= capacity), bound, CRIT, tol)
    k = math.ceil(math.log(bound / capacity) / math.log1p(tol) - 1e-9)
    assert cap.rate == pytest.approx(grid_rate(bound, tol, max(k, 1)))
    assert cap.rate <= capacity < cap.failed_rate * (1 + 1e-12) or cap.failed_rate == bound
    assert len(cap.probes) <= 12


def test_capacity_search_gives_zero_when_nothing_passes():
    cap = search_capacity(fake_probe(lambda r: False), 10.0, CRIT, 0.05)
    assert cap.rate == 0.0 and cap.failed_rate < 10.0 / 999


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(1, 150), max_size=40), st.sets(st.integers(1, 150), max_size=40))
def test_capacity_never_falls_when_more_rates_pass(passing, extra):
    """A looser SLO can only turn failures into passes; whatever the pass pattern, capacity must not drop."""
    bound, tol = 10.0, 0.05
    grid = {round(grid_rate(bound, tol, k), 12) for k in passing}
    more = grid | {round(grid_rate(bound, tol, k), 12) for k in extra}
    tight = search_capacity(fake_probe(lambda r: round(r, 12) in grid), bound, CRIT, tol)
    loose = search_capacity(fake_probe(lambda r: round(r, 12) in more), bound, CRIT, tol)
    assert loose.rate >= tight.rate


def test_pareto_frontier():
    xs = [1, 2, 3, 4, 2, None]
    ys = [5, 3, 4, 1, 3, 0]
    assert frontier(xs, ys) == [0, 1, 3]
    assert frontier(xs, ys, minimize_x=False, minimize_y=False) == [3, 2, 0]


def test_probe_length_spans_the_window_within_the_sample():
    rule = ProbeLength(min_requests=100, seconds=60, max_requests=1000)
    assert rule.requests(0.5) == 100 and rule.requests(5.0) == 300 and rule.requests(50.0) == 1000


def test_bundled_prices_cover_the_catalog_and_name_sources():
    prices = load_prices()
    for d in list_devices():
        assert prices.price(d.name) > 0
        assert "http" in prices.sources[d.name] and "20" in prices.sources[d.name]


@pytest.mark.parametrize("text, message", [
    ("gpus:\n  h100: {price: -1}\n", r"prices.yaml:2: price of 'h100' must be a positive number"),
    ("gpus:\n  h100: {price: 2}\n  tpu9: {price: 1}\n", r"prices.yaml:3: unknown GPU 'tpu9'"),
    ("gpus:\n  h100: {cost: 2}\n", r"prices.yaml:2: GPU 'h100' needs `price:`"),
    ("[1, 2]\n", r"prices.yaml:1: expected a mapping with a `gpus:` section"),
])
def test_bad_price_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(ServesimError, match=message):
        load_prices(path)


def test_vllm_command_carries_the_planned_knobs():
    cand = Candidate("h100", tp=4, dtype="fp8", max_num_seqs=128, max_num_batched_tokens=4096,
                     long_prefill_token_threshold=512)
    cfg = cand.run_config(RunConfig(enable_prefix_caching=False))
    cmd = vllm_serve(cand, cfg, "meta-llama/Llama-3.1-70B-Instruct",
                     {"max_model_len": 16384, "max_num_seqs": 128, "max_num_batched_tokens": 4096})
    assert cmd.startswith("vllm serve meta-llama/Llama-3.1-70B-Instruct --tensor-parallel-size 4")
    for flag in ("--quantization fp8", "--max-model-len 16384", "--max-num-seqs 128", "--max-num-batched-tokens 4096",
                 "--long-prefill-token-threshold 512", "--no-enable-prefix-caching"):
        assert flag in cmd


def test_cache_round_trip(tmp_path):
    store = ResultCache(tmp_path / "c.sqlite")
    probe = Probe(2.5, {"ttft_p90_s": 0.25, "duration_s": 10.0}, np.array([0.1, np.nan]), np.array([0.02, np.nan]))
    store.put("k", [probe])
    got = store.get("k")[2.5]
    assert got.metrics == probe.metrics and got.cached
    assert np.array_equal(got.ttft, probe.ttft, equal_nan=True) and np.array_equal(got.tpot, probe.tpot, equal_nan=True)
    assert store.get("other") == {}


SWEEP = """\
model: llama-3.1-8b
gpu: a100
workload: {workload: chat, qps: 4, requests: 60}
slo: {ttft: 1s, tpot: 50ms}
grid:
  max_num_seqs: [16, 128]
  max_num_batched_tokens: [512, 2048]
"""


def test_sweep_runs_every_grid_point(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    out = tmp_path / "out"
    res = runner.invoke(app, ["sweep", "-c", str(path), "-o", str(out), "--executor", "serial",
                              "--cache", str(tmp_path / "c.sqlite")])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out / "sweep.parquet").to_pylist()
    assert [(r["max_num_seqs"], r["max_num_batched_tokens"]) for r in table] == [(16, 512), (16, 2048), (128, 512), (128, 2048)]
    assert all(r["completed"] == 60 and 0 <= r["slo_attainment"] <= 1 for r in table)
    assert len({r["ttft_p90_s"] for r in table}) > 1, "the knobs should change the outcome"
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["grid"] == {"max_num_seqs": [16, 128], "max_num_batched_tokens": [512, 2048]}
    first = (out / "sweep.json").read_bytes()
    res = runner.invoke(app, ["sweep", "-c", str(path), "-o", str(out), "--executor", "serial", "--no-cache"])
    assert res.exit_code == 0 and (out / "sweep.json").read_bytes() == first


def test_sweep_bad_grid_key_names_file_and_line(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.replace("max_num_batched_tokens: [512, 2048]", "max_num_batched_tokenz: [512]"))
    res = runner.invoke(app, ["sweep", "-c", str(path), "--executor", "serial", "--no-cache"])
    assert res.exit_code == 2
    assert f"{path}:7: unknown setting 'max_num_batched_tokenz'" in " ".join(res.output.split())


PLAN = ["plan", "--model", "llama-3.1-8b", "--workload", "chat", "--slo-ttft", "1s", "--slo-tpot", "50ms",
        "--gpus", "l40s", "--tp", "1", "--max-num-seqs", "256", "--max-num-batched-tokens", "2048",
        "--probe-requests", "50", "--probe-seconds", "20s", "--verify-requests", "50", "--verify-seconds", "20s",
        "--executor", "serial", "--no-cache", "--top", "1"]


def test_cli_plan_writes_outputs_and_the_command(tmp_path):
    res = runner.invoke(app, PLAN + ["--qps", "6", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 1" in text
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["winner"]["id"] == "l40s-tp1-bf16-seqs256-tokens2048"
    assert len(pq.read_table(tmp_path / "plan.parquet")) == 1
    assert len(pq.read_table(tmp_path / "probes.parquet")) >= 3


def test_cli_plan_unmet_slos_exit_nonzero_with_the_shortfall(tmp_path):
    res = runner.invoke(app, PLAN + ["--qps", "500", "--max-gpus", "2", "-o", str(tmp_path)])
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "no deployment meets 500 req/s" in text and "l40s-tp1" in text and "%" in text


def test_a_winner_that_fails_the_longer_run_is_flagged(tmp_path):
    """Traffic that turns heavy after the probes' window: the verification catches it and the CLI warns."""
    gaps = np.concatenate([np.full(400, 1.0), np.full(1600, 0.2)])  # calm, then 5x the rate
    rows = ["arrived_at,num_prefill_tokens,num_decode_tokens"]
    rows += [f"{t:.3f},1000,200" for t in np.cumsum(gaps)]
    trace = tmp_path / "shift.csv"
    trace.write_text("\n".join(rows) + "\n")
    args = ["plan", "--model", "llama-3.1-8b", "--trace", str(trace), "--qps", "8", "--slo-ttft", "1s",
            "--slo-tpot", "50ms", "--gpus", "l40s", "--tp", "1", "--max-num-seqs", "256",
            "--max-num-batched-tokens", "2048", "--probe-requests", "50", "--probe-seconds", "5s",
            "--verify-requests", "1500", "--verify-seconds", "0s", "--executor", "serial", "--no-cache",
            "--top", "1", "-o", str(tmp_path / "out")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert doc["winner"]["verified"] is False
    assert "raise --probe-seconds" in " ".join(res.output.split())


def test_pipeline_parallel_layouts_are_searched_and_checked_per_stage():
    from servesim.models import get_model
    from servesim.plan.space import SearchSpace

    model = get_model("llama-3.1-70b")
    candidates = SearchSpace(gpus=("h100",), tp=(1, 2), pp=(1, 2, 4)).candidates(model)
    assert {(c.tp, c.pp) for c in candidates} == {(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (2, 4)}
    assert max(c.gpus_per_replica for c in candidates) == 8
