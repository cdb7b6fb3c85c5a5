"""The planner with disaggregated prefill/decode units (xPyD) and whole-deployment verification: the DistServe
setting where disaggregation wins, a setting where co-location wins, pruned == exhaustive with xPyD
candidates in the grid, the bounds the pruning relies on, and the per-pool command lines."""

from dataclasses import replace

import numpy as np
import pytest

from plan_checks import assert_flooded_run_respects
from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.metrics.latency import request_latencies
from servesim.models import get_model
from servesim.plan.bounds import assess
from servesim.plan.cache import ResultCache
from servesim.plan.evaluate import evaluate
from servesim.plan.executors import LocalExecutor, SerialExecutor
from servesim.plan.output import plan_document
from servesim.plan.prices import load_prices
from servesim.plan.probe import at_rate, prefix
from servesim.plan.search import RANKED, PlanRequest, plan, replica_price
from servesim.plan.space import DisaggCandidate, Pool, SearchSpace, pool_counts
from servesim.plan.vllm_command import deployment
from servesim.simulate import run_simulation
from servesim.workload.build import build_workload

# Issue 5's DistServe setting (tests/test_behaviour.py): Llama-3.1-8B on H100s with the roofline clock,
# 4096-token prompts, 256-token answers, TTFT 0.5 s and TPOT 5 ms.
TIGHT = dict(isl=4096, osl=256, slo_ttft=0.5, slo_tpot=0.005)
LOOSE = dict(isl=256, osl=256, slo_ttft=2.0, slo_tpot=0.1)
SMALL = dict(probe_requests=60, probe_seconds=5.0, verify_requests=100, verify_seconds=5.0, top=2, window=2)


def request(qps, slos, disagg="on", **kw) -> PlanRequest:
    base = RunConfig(model="llama-3.1-8b", cost_model="roofline", arrival="poisson", seed=1, max_model_len=16384,
                     **slos)
    space = SearchSpace(gpus=("h100",), tp=(1, 4), max_num_seqs=(256,), max_num_batched_tokens=(2048,), disagg=disagg)
    return PlanRequest(base, qps, space, load_prices(), **{**SMALL, **kw})


def run(req, cache=None):
    executor = SerialExecutor(evaluate)
    try:
        return plan(req, executor, cache)
    finally:
        executor.close()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    store = ResultCache(tmp_path_factory.mktemp("disagg") / "cache.sqlite")
    yield store
    store.close()


def test_disaggregation_wins_under_tight_tpot_and_long_prompts_and_pruning_keeps_the_winner(cache):
    pruned = run(request(80.0, TIGHT), cache)
    full = run(request(80.0, TIGHT, exhaustive=True), cache)
    w = pruned.winner
    assert w is not None and w.candidate.mode == "disaggregated"
    assert (w.id, w.cost_per_hour) == (full.winner.id, full.winner.cost_per_hour)
    assert any(p.status == "pruned-cost" and p.candidate.mode == "disaggregated" for p in pruned.points)
    by_id = {p.id: p for p in full.points}
    for p in pruned.points:  # a pruned candidate really could not have beaten the winner
        if p.status == "pruned-cost" and by_id[p.id].status == RANKED:
            assert by_id[p.id].rank_key() > full.winner.rank_key()
    colocated = [p for p in full.ranked if p.candidate.mode == "colocated"]
    assert colocated and colocated[0].cost_per_hour > 1.3 * w.cost_per_hour  # DistServe's goodput-per-GPU gap
    # the winner's check is the whole deployment: its units pooled behind the router, at the full target rate
    assert w.replicas > 1 and w.simulated_replicas == w.replicas
    assert w.verification.rate == 80.0 and w.verification.attainment(pruned.request.slo) >= 0.9
    pool = LocalExecutor(evaluate, workers=2)  # the same files from a process pool, without the cache
    try:
        pooled = plan(request(80.0, TIGHT), pool, None)
    finally:
        pool.close()
    assert plan_document(pooled) == plan_document(pruned)
    doc, rows = plan_document(pruned)
    assert doc["winner"]["mode"] == "disaggregated" and "--kv-transfer-config" in doc["winner"]["vllm_serve"]
    assert {r["simulated_replicas"] for r in rows if r["kind"] == "verification"} == {w.replicas}


@pytest.fixture(scope="module")
def loose():
    req = request(250.0, LOOSE)
    return req, run(req)


def test_colocation_wins_with_short_prompts_and_loose_slos(loose):
    _, result = loose
    assert result.winner.candidate.mode == "colocated"
    disagg = [p for p in result.points if p.candidate.mode == "disaggregated"]
    assert disagg and all(p.status in (RANKED, "pruned-cost") for p in disagg)  # considered, and beaten
    for p in disagg:
        if p.status == RANKED:
            assert p.cost_per_hour > result.winner.cost_per_hour


def test_the_winners_verification_is_a_real_multi_replica_run(loose):
    req, result = loose
    w = result.winner
    assert w.replicas > 1 and w.simulated_replicas == w.replicas
    # the same deployment simulated directly: N replicas behind the router, every request at the target rate
    cfg = w.candidate.cluster_config(replace(req.base, max_model_len=result.max_model_len), w.replicas)
    assert cfg.replicas == w.replicas
    sample = build_workload(replace(req.base, qps=1.0, requests=20_000, duration=None))
    n = max(req.verify_requests, int(np.ceil(req.qps * req.verify_seconds)))
    direct = run_simulation(cfg, workload=at_rate(prefix(sample, n), req.qps))
    np.testing.assert_array_equal(request_latencies(direct.requests)["ttft"], w.verification.ttft)
    assert len(w.verification.ttft) == n
    assert set(direct.requests["replica"].tolist()) == set(range(w.replicas))  # every replica took traffic


# --- the bounds the pruning relies on, for xPyD units ------------------------------------------------------

@pytest.mark.parametrize("prefill, decode, layerwise, link, shape", [
    ("h100:1x3", "h100:4x1", False, "auto", dict(workload="chat", max_num_seqs=128)),  # NVLink; prefill-bound
    ("h100:2x1", "h100:1x2", True, "network", dict(workload="chat", max_num_seqs=128)),  # InfiniBand, layer-wise
    ("h100:1x1", "h100:1x1", False, "auto", dict(isl=512, osl=512, max_num_seqs=32)),  # decode-batch-bound
])
def test_flooded_units_respect_the_throughput_bound_and_latency_floors(prefill, decode, layerwise, link, shape):
    cfg = RunConfig(model="llama-3.1-8b", gpu="h100", max_num_batched_tokens=2048, max_model_len=16384, seed=1,
                    prefill_pool=prefill, decode_pool=decode, kv_layerwise=layerwise, kv_link=link,
                    router="least-outstanding", **shape)
    sample = build_workload(replace(cfg, qps=1.0, requests=300))
    a = assess(cfg, sample)
    assert a.status == "ok", a.reason
    assert_flooded_run_respects(cfg, sample, a)


def test_a_decode_pool_that_cannot_hold_one_request_does_not_fit():
    cfg = RunConfig(model="llama-3.1-70b", gpu="h100", workload="chat", max_model_len=131072, prefill_pool="h100:4x1",
                    decode_pool="h100:2x1")
    a = assess(cfg, build_workload(replace(cfg, qps=1.0, requests=50)))
    assert a.status == "no-fit" and a.reason.startswith("decode pool h100:2x1: the KV cache holds")


# --- the search space and the command lines ----------------------------------------------------------------

def test_xpyd_units_are_coprime_within_the_gpu_cap_and_pair_gpu_types_only_when_asked():
    assert pool_counts(2) == [(1, 1), (1, 2), (2, 1)]
    model = get_model("llama-3.1-8b")
    space = SearchSpace(gpus=("h100", "a100"), tp=(1, 2), disagg="only", disagg_max_pool=3, disagg_max_gpus=4)
    units = space.candidates(model)
    assert units and all(c.mode == "disaggregated" for c in units)
    assert all(c.gpus_per_replica <= 4 and c.prefill.gpu == c.decode.gpu for c in units)
    assert {(c.prefill.count, c.decode.count) for c in units} == {(1, 1), (1, 2), (2, 1), (1, 3), (3, 1)}
    mixed = SearchSpace(gpus=("h100", "a100"), tp=(1,), disagg="on", disagg_max_pool=1, disagg_mixed_gpus=True)
    assert {c.gpu for c in mixed.candidates(model)} == {"h100", "a100", "h100+a100", "a100+h100"}
    with pytest.raises(ServesimError, match="--disagg 'maybe' is not a mode; valid choices: off, on, only"):
        SearchSpace(gpus=("h100",), disagg="maybe").candidates(model)


def test_units_are_priced_per_pool():
    prices = load_prices()
    same = DisaggCandidate(Pool("h100", 1, 3), Pool("h100", 4, 1))
    mixed = DisaggCandidate(Pool("h100", 1, 2), Pool("a100", 2, 1))
    assert same.gpus_per_replica == 7 and mixed.gpus_per_replica == 4
    assert replica_price(same, prices) == pytest.approx(7 * prices.price("h100"))
    assert replica_price(mixed, prices) == pytest.approx(2 * prices.price("h100") + 2 * prices.price("a100"))


def test_per_pool_vllm_lines_use_each_pools_tp_and_the_kv_connector():
    c = DisaggCandidate(Pool("h100", 1, 3), Pool("h100", 4, 1), max_num_seqs=256, max_num_batched_tokens=2048)
    engine = {"max_model_len": 16384, "max_num_seqs": 256, "max_num_batched_tokens": 2048}
    out = deployment(c, c.run_config(RunConfig()), "meta-llama/Llama-3.1-8B-Instruct", engine, replicas=2)
    p, d = out["vllm_serve_pools"]["prefill"], out["vllm_serve_pools"]["decode"]
    assert "--tensor-parallel-size 1 " in p and '"kv_role":"kv_producer"' in p
    assert "--tensor-parallel-size 4 " in d and '"kv_role":"kv_consumer"' in d
    for line in (p, d):
        assert "--kv-transfer-config '{\"kv_connector\":\"NixlConnector\"" in line and "<HOST>" in line
    assert "6 prefill instance(s)" in out["deploy"] and "2 decode instance(s)" in out["deploy"]
    assert any("proxy" in item for item in out["fill_in"])


def test_cli_prints_the_per_pool_lines_and_rejects_a_bad_mode(tmp_path):
    import json

    from typer.testing import CliRunner

    from servesim.cli import app

    (tmp_path / "base.yaml").write_text("model: llama-3.1-8b\ncost_model: roofline\nmax_model_len: 16384\n"
                                        "workload: {isl: 4096, osl: 256, arrival: poisson}\n")
    args = ["plan", "-c", str(tmp_path / "base.yaml"), "--qps", "40", "--slo-ttft", "500ms", "--slo-tpot", "5ms",
            "--gpus", "h100", "--tp", "1,4", "--max-num-seqs", "256", "--max-num-batched-tokens", "2048",
            "--disagg-max-pool", "3", "--probe-requests", "60", "--probe-seconds", "5s", "--verify-requests", "100",
            "--verify-seconds", "5s", "--top", "1", "--executor", "serial", "--no-cache", "-o", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args + ["--disagg", "only"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert doc["winner"]["mode"] == "disaggregated"
    for line in doc["winner"]["vllm_serve_pools"].values():
        assert line in res.output  # printed whole, on one line each
    assert "# prefill pool:" in res.output and "# fill in:" in res.output
    res = CliRunner().invoke(app, args + ["--disagg", "maybe"])
    assert res.exit_code == 2 and "--disagg 'maybe' is not a mode" in res.output


def test_a_bad_router_is_refused_before_any_work():
    req = request(20.0, LOOSE)
    with pytest.raises(ServesimError, match="unknown router 'bogus'; valid choices: round-robin"):
        run(replace(req, base=replace(req.base, router="bogus")))
