"""The cluster driver: exact against a hand-stepped replica, exact with and without decode spans across many
replicas (open and closed loop, every router), routers doing what they say, and disaggregated runs whose
TTFT parts add up and whose KV transfers take bytes / bandwidth."""

import math
from dataclasses import replace

import numpy as np
import pytest

from conftest import UnitCost
from servesim.cluster.driver import ClusterRun
from servesim.cluster.replica import Replica
from servesim.cluster.router import ROUTERS, make_router
from servesim.cluster.transfer import KVTransfer
from servesim.config import make_config
from servesim.engine.config import EngineConfig
from servesim.engine.engine import ReplicaEngine
from servesim.engine.policies import make_policy
from servesim.engine.requests import RequestTable
from servesim.hardware.links import Link
from servesim.simulate import run_simulation
from servesim.workload.workload import Workload


class GrowingCost(UnitCost):
    """Step time grows with the batch and its KV, so replicas drift apart and spans meet horizons."""

    def step_time(self, shape):
        return 0.5 + 0.01 * shape.num_seqs + 1e-4 * (shape.decode_kv_tokens + shape.prefill_tokens)

    def decode_span(self, num_seqs, kv_tokens, steps):
        kv = kv_tokens + num_seqs * np.arange(steps, dtype=np.float64)
        return 0.5 + 0.01 * num_seqs + 1e-4 * kv


def workload(n=60, seed=0, closed=False, prefixes=False):
    rng = np.random.default_rng(seed)
    prompts = rng.integers(20, 400, n)
    outputs = rng.integers(1, 60, n)
    prefix = [tuple(range(g * 10, g * 10 + 3)) for g in rng.integers(0, 4, n)] if prefixes else None
    if closed:
        return Workload("t", prompts, outputs, concurrency=6, think_time=0.3, prefix_ids=prefix, prefix_block_tokens=16)
    return Workload("t", prompts, outputs, arrival=np.cumsum(rng.exponential(0.8, n)), prefix_ids=prefix,
                    prefix_block_tokens=16)


def engines(w, count, use_spans, policy="vllm-v1", max_tokens=None, first=0, role="colocated", **eng):
    cfg = EngineConfig(**{**dict(num_gpu_blocks=120, block_size=16, max_num_batched_tokens=256, max_num_seqs=8,
                                 max_model_len=1024), **eng})
    table = RequestTable(w.prompt_len, w.output_len if max_tokens is None else max_tokens, w.prefix_ids,
                         w.prefix_block_tokens)
    return [Replica(first + i, role, "unit", 1,
                    ReplicaEngine(cfg, GrowingCost(), make_policy(policy), table, replica_id=first + i, use_spans=use_spans))
            for i in range(count)]


def schedule_calls(replicas):
    """The replicas' schedule() calls, one per single step: with spans, steps outnumber them."""
    return sum(r.engine.steps.num_rows for r in replicas)


def outcome(replicas, run):
    req = replicas[0].engine.req.outputs_as_numpy()
    steps = [r.engine.steps.as_numpy() for r in replicas]
    return req, steps, list(run.routed), list(run.decoded_on)


def assert_same(a, b):
    (ra, sa, rta, da), (rb, sb, rtb, db) = a, b
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
    for x, y in zip(sa, sb):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    assert rta == rtb and da == db


def test_one_replica_cluster_equals_hand_stepping():
    w = workload(80)
    [rep] = engines(w, 1, use_spans=False)
    ClusterRun([rep], make_router("round-robin", 1)).run(w)
    [ref] = engines(w, 1, use_spans=False)
    eng, times, t, i = ref.engine, w.arrival.tolist(), 0.0, 0
    while i < len(times) or eng.busy:
        while i < len(times) and times[i] <= t:
            eng.add(i, times[i])
            i += 1
        if not eng.busy:
            t = times[i]
            continue
        t = eng.step(t)
    np.testing.assert_array_equal(rep.engine.req.outputs_as_numpy()["finished"], eng.req.outputs_as_numpy()["finished"])
    np.testing.assert_array_equal(rep.engine.steps.as_numpy()["start"], eng.steps.as_numpy()["start"])


@pytest.mark.parametrize("router", list(ROUTERS))
@pytest.mark.parametrize("closed", [False, True])
def test_spans_are_exact_across_replicas(router, closed):
    w = workload(70, seed=3, closed=closed, prefixes=True)
    results = []
    for spans in (False, True):
        reps = engines(w, 3, spans)
        run = ClusterRun(reps, make_router(router, 3, seed=1, prefix_ids=w.prefix_ids, prefix_block_tokens=16))
        run.run(w)
        results.append(outcome(reps, run))
    assert_same(*results)
    assert schedule_calls(reps) < 0.7 * sum(len(s["start"]) for s in results[1][1])  # spans did happen


@pytest.mark.parametrize("closed", [False, True])
@pytest.mark.parametrize("layerwise", [False, True])
def test_disaggregated_spans_are_exact(closed, layerwise):
    w = workload(60, seed=5, closed=closed)
    results = []
    for spans in (False, True):
        prefill = engines(w, 2, spans, max_tokens=np.ones(len(w), dtype=np.int64), role="prefill")
        decode = engines(w, 2, spans, first=2, role="decode")
        transfer = KVTransfer(Link("test", 1e6, 0.05), 100.0, 1, 1, 4, layerwise, 2, 2)
        run = ClusterRun(prefill, make_router("least-outstanding", 2), decode, make_router("least-kv", 2), transfer)
        run.run(w)
        results.append((outcome(prefill, run), outcome(decode, run)[:2]))
    assert schedule_calls(decode) < 0.7 * sum(len(r.engine.steps) for r in decode)
    assert_same(results[0][0], results[1][0])
    for x, y in zip(results[0][1][1], results[1][1][1]):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    np.testing.assert_array_equal(results[0][1][0]["finished"], results[1][1][0]["finished"])


def test_round_robin_and_least_outstanding_spread_load():
    w = workload(90, seed=1)
    reps = engines(w, 3, True)
    run = ClusterRun(reps, make_router("round-robin", 3))
    run.run(w)
    assert [run.routed.count(i) for i in range(3)] == [30, 30, 30]
    assert run.routed[:6] == [0, 1, 2, 0, 1, 2]


class FakeView:
    def __init__(self, load, kv=0.0):
        self.load, self.kv = load, kv

    def outstanding(self, now):
        return self.load

    def kv_usage(self, now):
        return self.kv


def loaded(loads):
    """Idle replicas whose outstanding requests are `loads` (requests on their way in): the least-outstanding
    router takes real replicas, since compiled it calls them natively."""
    reps = engines(workload(5), len(loads), True)
    for rep, load in zip(reps, loads):
        rep.incoming = load
    return reps


def test_router_choices():
    views = [FakeView(5, 0.5), FakeView(2, 0.9), FakeView(2, 0.1), FakeView(7, 0.0)]
    assert make_router("least-outstanding", 4).choose(0, loaded([5, 2, 2, 7]), 0.0) == 1  # lowest index of the least
    assert make_router("least-outstanding", 4).choose(0, loaded([0, 3, 0, 0]), 0.0) == 0
    assert make_router("least-kv", 4).choose(0, views, 0.0) == 3
    p2 = make_router("power-of-two", 4, seed=9)
    picks = [p2.choose(0, views, 0.0) for _ in range(200)]
    assert picks.count(3) == 0  # 7 outstanding always loses its pair
    assert set(picks) <= {0, 1, 2} and len(set(picks)) == 3


def test_prefix_affinity_follows_prefixes_within_its_load_cap():
    prefix_ids = [(1, 2, 3), (1, 2, 9), (1, 2, 3, 4), (7,), (1, 2, 3)]
    r = make_router("prefix-affinity", 3, prefix_ids=prefix_ids, load_cap=2)
    views = [FakeView(0), FakeView(0), FakeView(0)]
    assert r.choose(0, views, 0.0) == 0  # nothing remembered: least loaded, lowest index
    views[0].load = 2
    assert r.choose(1, views, 0.0) == 0  # shares (1, 2) with request 0; within the cap (2 <= 0 + 2)
    assert r.choose(3, views, 0.0) == 1  # no shared prefix anywhere: least loaded
    views[0].load = 3
    assert r.choose(2, views, 0.0) == 1  # replica 0 holds the prefix but is 3 above the least loaded
    views[1].load = 1
    assert r.choose(4, views, 0.0) == 1  # ... and now replica 1 holds (1, 2, 3) too, within the cap


def test_router_sees_a_step_in_flight():
    w = workload(5)
    [rep] = engines(w, 1, False)
    eng = rep.engine
    eng.add(0, 0.0)
    rep.next_at = eng.step(0.0)
    assert rep.outstanding(0.0) == 1 and rep.kv_usage(0.0) > 0


# --- through run_simulation: disaggregated timelines ---

BASE = dict(model="llama-3.1-8b", isl=2048, osl=64, qps=2.0, requests=60, seed=2, max_model_len=16384)


def test_disaggregated_ttft_parts_add_up_and_transfer_is_bytes_over_bandwidth():
    cfg = make_config(None, **BASE, prefill_pool="h100:1x2", decode_pool="h100:2x1", kv_link="network")
    r = run_simulation(cfg)
    req = r.requests
    parts = (req["first_scheduled"] - req["arrival"]) + (req["prefill_done"] - req["first_scheduled"]) \
        + (req["kv_arrived"] - req["prefill_done"]) + (req["decode_admitted"] - req["kv_arrived"]) \
        + (req["first_token"] - req["decode_admitted"])
    np.testing.assert_allclose(parts, req["first_token"] - req["arrival"], rtol=0, atol=1e-9)
    link = r.meta["cluster"]["kv_link"]
    assert link["kind"] == "infiniband" and link["bandwidth_GB_s"] == 50
    # 2048 tokens of Llama-3.1-8B KV (128 KiB/token) over min(TP 1, TP 2) = one 50 GB/s NIC, + 20 us
    wire = 2048 * 131072 / 50e9 + 20e-6
    transfer = req["kv_arrived"] - req["prefill_done"]
    assert transfer.min() == pytest.approx(wire, rel=1e-9)
    assert (transfer >= wire - 1e-12).all()
    s = r.summary
    assert set(s["ttft_breakdown_s"]) == {"prefill_queue", "prefill", "transfer", "decode_queue", "first_decode_step"}
    assert s["cluster"]["gpus"] == 4 and len(s["replicas"]) == 3
    assert s["requests"]["completed"] == 60
    # the decode pool never computes a prompt: each request costs it one recomputed token, then its outputs
    decode_steps = r.steps["replica"] >= 2
    assert r.steps["num_tokens"][decode_steps].sum() == 60 * 64
    assert r.steps["prefill_tokens"][~decode_steps].sum() == 60 * 2048 - req["cached_tokens"].sum()


def test_layerwise_transfer_overlaps_the_prefill():
    cfg = make_config(None, **BASE, prefill_pool="h100:1x1", decode_pool="h100:1x1", kv_link="network")
    plain = run_simulation(cfg).requests
    piped = run_simulation(replace(cfg, kv_layerwise=True)).requests
    t_plain = np.nanmean(plain["kv_arrived"] - plain["prefill_done"])
    t_piped = np.nanmean(piped["kv_arrived"] - piped["prefill_done"])
    assert t_piped < 0.2 * t_plain


def test_decode_admission_waits_for_free_blocks():
    # A decode pool of 1,100 KV blocks (17,600 tokens) and 2048-token prompts: at most 8 requests decode at once.
    cfg = make_config(None, **{**BASE, "qps": 50.0, "osl": 400, "max_model_len": 4096}, prefill_pool="h100:1x2",
                      decode_pool="h100:1x1", num_gpu_blocks=1100)
    r = run_simulation(cfg)
    decode_steps = r.steps["replica"] == 2
    assert r.steps["running"][decode_steps].max() <= 8
    wait = r.requests["decode_admitted"] - r.requests["kv_arrived"]
    assert np.nanmax(wait) > 1.0  # queued at the decode pool
    assert r.summary["requests"]["completed"] == 60


def test_nvlink_when_the_pools_share_a_node():
    cfg = make_config(None, **BASE, prefill_pool="h100:2x1", decode_pool="h100:2x1")
    assert run_simulation(cfg).meta["cluster"]["kv_link"]["kind"] == "nvlink"
    cfg = make_config(None, **BASE, prefill_pool="h100:4x2", decode_pool="h100:2x1")
    assert run_simulation(cfg).meta["cluster"]["kv_link"]["kind"] == "infiniband"  # 10 GPUs: two nodes


def test_colocated_replicas_report_per_replica_metrics():
    cfg = make_config(None, model="llama-3.1-8b", workload="chat", qps=20, requests=400, seed=1, replicas=3,
                      router="least-outstanding")
    s = run_simulation(cfg).summary
    reps = s["replicas"]
    assert [r["replica"] for r in reps] == [0, 1, 2]
    assert sum(r["requests"] for r in reps) == 400
    assert all(r["requests"] > 100 for r in reps)
    assert s["cluster"]["gpus"] == 3
    assert s["cluster"]["requests_per_s_per_gpu"] == pytest.approx(s["throughput"]["requests_per_s"] / 3)
    assert math.isfinite(reps[0]["ttft_p99_s"])
