"""The planner's checks that can fail: pruning never changes the winner, monotonicity in SLOs and traffic,
determinism across executors and the cache, and the bounds the pruning relies on."""

from dataclasses import replace

import numpy as np
import pytest

from plan_checks import assert_flooded_run_respects
from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.metrics.latency import request_latencies
from servesim.plan.bounds import assess
from servesim.plan.cache import ResultCache
from servesim.plan.evaluate import evaluate
from servesim.plan.executors import LocalExecutor, SerialExecutor
from servesim.plan.output import plan_document
from servesim.plan.prices import load_prices
from servesim.plan.search import RANKED, PlanRequest, plan
from servesim.plan.space import SearchSpace
from servesim.simulate import run_simulation
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

SMALL = dict(probe_requests=50, probe_seconds=20.0, verify_requests=50, verify_seconds=20.0, top=2, window=2)


def small_request(qps=12.0, ttft=1.0, tpot=0.05, gpus=("a100", "l40s"), **kw) -> PlanRequest:
    base = RunConfig(model="llama-3.1-8b", workload="chat", slo_ttft=ttft, slo_tpot=tpot, seed=3)
    space = SearchSpace(gpus=gpus, tp=(1, 2), max_num_seqs=(32, 256), max_num_batched_tokens=(2048,))
    return PlanRequest(base, qps, space, load_prices(), **{**SMALL, **kw})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    store = ResultCache(tmp_path_factory.mktemp("plan") / "cache.sqlite")
    yield store
    store.close()


def run(req, cache=None, executor=None):
    executor = executor or SerialExecutor(evaluate)
    try:
        return plan(req, executor, cache)
    finally:
        executor.close()


def test_pruned_search_finds_the_exhaustive_winner(cache):
    pruned = run(small_request(), cache)
    full = run(small_request(exhaustive=True), cache)
    assert full.winner is not None and pruned.winner is not None
    assert pruned.winner.id == full.winner.id
    assert pruned.winner.cost_per_hour == full.winner.cost_per_hour
    assert any(p.status == "pruned-cost" for p in pruned.points), "the small grid should exercise cost pruning"
    assert all(p.status not in ("pruned-cost", "pruned-slo", "pruned-gpus") for p in full.points)
    by_id = {p.id: p for p in full.points}
    for p in pruned.points:  # every pruned candidate really could not have beaten the winner
        if p.status == "pruned-cost" and by_id[p.id].status == RANKED:
            assert by_id[p.id].rank_key() > full.winner.rank_key()


def test_tighter_slos_never_give_a_cheaper_plan(cache):
    costs = []
    for ttft, tpot in [(2.0, 0.08), (1.0, 0.08), (1.0, 0.05), (0.5, 0.05), (0.3, 0.04)]:  # tighter and tighter
        result = run(small_request(ttft=ttft, tpot=tpot), cache)
        costs.append(result.winner.cost_per_hour if result.winner else float("inf"))
    assert costs == sorted(costs), costs
    assert costs[0] < costs[-1], "the SLO range should change the plan"


def test_more_traffic_never_gives_fewer_gpus(cache):
    gpus, costs = [], []
    for qps in (2.0, 6.0, 12.0, 24.0, 40.0):
        result = run(small_request(qps=qps, gpus=("a100",)), cache)
        gpus.append(result.winner.gpus)
        costs.append(result.winner.cost_per_hour)
    assert gpus == sorted(gpus) and costs == sorted(costs), (gpus, costs)
    assert gpus[0] < gpus[-1]


def test_same_request_gives_identical_files_from_any_executor_and_the_cache(cache, tmp_path):
    req = small_request(qps=8.0)
    serial, _ = plan_document(run(req))
    pool = LocalExecutor(evaluate, workers=2)
    pooled, _ = plan_document(run(req, executor=pool))
    stored_before = cache.stored
    first, _ = plan_document(run(req, cache))
    stored_after_first = cache.stored
    again, _ = plan_document(run(req, cache))
    assert serial == pooled == first == again
    assert cache.stored == stored_after_first, "a repeated search must take every probe from the cache"
    assert stored_after_first >= stored_before


def test_interrupt_keeps_finished_candidates():
    class Interrupting(SerialExecutor):
        def __init__(self):
            super().__init__(evaluate)
            self.received = 0

        def next_done(self):
            if self.received == 2:
                raise KeyboardInterrupt
            self.received += 1
            return super().next_done()

    result = plan(small_request(exhaustive=True), Interrupting(), None)
    assert result.interrupted
    finished = [p for p in result.points if p.capacity is not None]
    assert len(finished) == 2
    assert any(p.status == "interrupted" for p in result.points)


def test_no_gpu_fits_says_so_with_memory_numbers():
    base = RunConfig(model="llama-3.1-70b", workload="chat", slo_ttft=1.0, slo_tpot=0.05)
    req = PlanRequest(base, 5.0, SearchSpace(gpus=("l40s", "a100"), tp=(1,)), load_prices(), **SMALL)
    with pytest.raises(ServesimError) as e:
        run(req)
    msg = str(e.value)
    assert "no GPU type fits llama-3.1-70b" in msg
    assert "l40s TP=1: weights 141.1 GB/GPU > 43.5 GB usable (48.3 GB x 0.9)" in msg
    assert "a100 TP=1: weights 141.1 GB/GPU > 77.3 GB usable" in msg and "\n" not in msg


def test_unmet_slos_report_the_closest_candidates():
    result = run(small_request(qps=200.0, gpus=("l40s",), max_gpus=4))
    assert result.winner is None
    doc, _ = plan_document(result)
    assert doc["winner"] is None and doc["closest"]
    best = doc["closest"][0]
    assert 0 < best["shortfall"] < 1 and best["reachable_requests_per_s"] < 200


@pytest.mark.parametrize("kw, message", [
    (dict(ttft=None), "plan needs --slo-ttft"),
    (dict(qps=0.0), "--qps must be > 0"),
    (dict(gpus=("h100", "b300")), "unknown GPU 'b300'"),
])
def test_bad_requests_fail_with_one_line(kw, message):
    with pytest.raises(ServesimError, match=message):
        run(small_request(**kw))


def test_missing_price_is_an_error_before_any_work(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpus:\n  a100: {price: 2.0}\n")
    req = replace(small_request(), prices=load_prices(prices))
    with pytest.raises(ServesimError, match=r"no price for GPU 'l40s' in .*prices.yaml"):
        run(req)


# --- the bounds the pruning relies on, checked against simulations ---------------------------------------

@pytest.mark.parametrize("gpu, tp, seqs, tokens", [("a100", 1, 256, 2048), ("h100", 2, 64, 8192), ("l40s", 1, 128, 512)])
def test_simulated_runs_respect_the_throughput_bound_and_latency_floors(gpu, tp, seqs, tokens):
    cfg = RunConfig(model="llama-3.1-8b", gpu=gpu, tp=tp, workload="chat", max_num_seqs=seqs,
                    max_num_batched_tokens=tokens, max_model_len=16384, seed=1)
    sample = build_workload(replace(cfg, qps=1.0, requests=300))
    a = assess(cfg, sample)
    assert_flooded_run_respects(cfg, sample, a)


def test_latency_floors_hold_with_prefix_cache_hits():
    rng = np.random.default_rng(0)
    n = 120
    prompts = rng.integers(1100, 3000, n)
    chains = [tuple(range(-(-int(p) // 512))) if i % 2 else tuple(range(1000 * i, 1000 * i + -(-int(p) // 512)))
              for i, p in enumerate(prompts)]  # odd requests share one growing chain: long cache hits
    w = Workload("shared", prompts, rng.integers(2, 60, n), arrival=np.arange(n) * 0.05, prefix_ids=chains)
    cfg = RunConfig(model="llama-3.1-8b", gpu="h100", max_model_len=8192)
    a = assess(cfg, w)
    result = run_simulation(cfg, workload=w)
    assert result.summary["prefix_cache"]["hit_tokens"] > 0
    lat = request_latencies(result.requests)
    assert np.all(lat["ttft"] >= a.ttft_floor * (1 - 1e-9))
