"""What the serving literature reports, reproduced by the policies and the cluster, as tests that can fail.

The runs use the roofline clock (pinned where a run config can choose its cost model), Llama-3.1-8B on
H100s, and request counts small enough for seconds per test.
"""

import math
from dataclasses import fields, replace

import numpy as np
import pytest

from conftest import shared_data
from servesim.config import RunConfig, make_config
from servesim.simulate import run_simulation
from servesim.workload.workload import Workload

CLOCK = {"cost_model": "roofline"} if "cost_model" in {f.name for f in fields(RunConfig)} else {}


def config(**kw):
    return make_config(None, **{"model": "llama-3.1-8b", "gpu": "h100", **CLOCK, **kw})


def run(cfg, **kw):
    return run_simulation(replace(cfg, **kw))


# --- DistServe: disaggregation wins under a tight TPOT with long prompts, loses with short prompts ---

def colocated_configs(base, gpus):
    return {f"{gpus // tp}xTP{tp} {policy}": replace(base, replicas=gpus // tp, tp=tp, policy=policy,
                                                     router="least-outstanding")
            for tp in (1, 2, 4, 8) if tp <= gpus for policy in ("vllm-v1", "sarathi")}


def test_disaggregation_beats_every_colocated_config_under_tight_tpot_and_long_prompts():
    # 8 GPUs, 4096-token prompts, TPOT <= 5 ms: decode needs TP=4 to meet it, prefill is cheapest at TP=1.
    # Co-located replicas must pick one TP for both; 4 prefill replicas (TP=1) + 1 decode replica (TP=4) need not.
    base = config(isl=4096, osl=256, slo_ttft=0.5, slo_tpot=0.005, arrival="poisson", qps=48.0, requests=300,
                  seed=1, max_model_len=16384)
    disagg = run(base, prefill_pool="h100:1x4", decode_pool="h100:4x1", router="least-outstanding")
    assert disagg.summary["slo"]["attainment"] >= 0.9
    for name, cfg in colocated_configs(base, 8).items():
        attained = run_simulation(cfg).summary["slo"]["attainment"]
        assert attained < 0.9, f"{name} meets the SLO at 48 req/s ({attained:.2f})"


def test_colocation_wins_with_short_prompts_and_loose_slos():
    # 2 GPUs, 256-token prompts, TTFT 2 s / TPOT 100 ms: no interference worth avoiding, so a prefill GPU is
    # mostly idle while one decode GPU carries every decode. At 250 req/s two co-located replicas meet the
    # SLO and 1P1D does not.
    base = config(isl=256, osl=256, slo_ttft=2.0, slo_tpot=0.1, arrival="poisson", qps=250.0, requests=2000, seed=1,
                  max_model_len=16384, router="least-outstanding")
    assert run(base, replicas=2).summary["slo"]["attainment"] >= 0.95
    attained = run(base, prefill_pool="h100:1x1", decode_pool="h100:1x1").summary["slo"]["attainment"]
    assert attained < 0.9


# --- Sarathi-Serve: chunked prefill cuts tail ITL at equal throughput ---

def test_chunked_prefill_has_lower_p99_itl_than_orca_at_equal_throughput():
    base = config(workload="chat", qps=15, requests=1500, seed=3, max_model_len=16384)
    results = {p: run(base, policy=p).summary for p in ("orca", "vllm-v1", "sarathi")}
    tput = {p: s["throughput"]["output_tokens_per_s"] for p, s in results.items()}
    itl = {p: s["latency_s"]["itl"]["p99"] for p, s in results.items()}
    for p in ("vllm-v1", "sarathi"):
        assert tput[p] == pytest.approx(tput["orca"], rel=0.01)
        assert itl[p] < 0.9 * itl["orca"], itl
    assert itl["sarathi"] < 0.3 * itl["orca"], itl  # a 512-token chunk is far smaller than a whole prompt


def test_orca_never_mixes_prefill_and_decode_and_splitfuse_fills_its_forward():
    base = config(workload="chat", qps=25, requests=600, seed=3, max_model_len=16384)
    orca = run(base, policy="orca").steps
    mixed = (orca["prefill_tokens"] > 0) & (orca["decode_tokens"] > 0)
    assert not mixed.any()
    fuse = run(base, policy="splitfuse").steps
    busy = fuse["prefill_tokens"] > 0
    full = fuse["num_tokens"][busy] == 768
    assert full.mean() > 0.5  # under load, prompt chunks top every forward up to exactly the budget


# --- Continuous batching beats request-level batching ---

def test_static_batching_has_lower_throughput_than_continuous_batching():
    base = config(workload="chat", concurrency=64, requests=1000, seed=3)
    static = run(base, policy="static")
    continuous = run(base, policy="vllm-v1")
    assert static.summary["throughput"]["output_tokens_per_s"] < 0.8 * continuous.summary["throughput"]["output_tokens_per_s"]
    # nobody joins a running batch: a step that prefills has no decodes (the batch starts together)
    steps = static.steps
    assert not ((steps["prefill_tokens"] > 0) & (steps["decode_tokens"] > 0)).any()


# --- Prefix-affinity routing (SGLang router, llm-d) ---

def affinity_vs_round_robin(cfg):
    rr = run(cfg, router="round-robin").summary
    pa = run(cfg, router="prefix-affinity").summary
    return rr, pa


def test_prefix_affinity_raises_hit_rate_and_lowers_ttft_on_the_longctx_preset():
    cfg = config(workload="longctx", qps=6, requests=600, seed=5, replicas=4, max_model_len=131072)
    rr, pa = affinity_vs_round_robin(cfg)
    assert pa["prefix_cache"]["hit_rate"] > 2 * rr["prefix_cache"]["hit_rate"]
    assert pa["latency_s"]["ttft"]["mean"] < 0.85 * rr["latency_s"]["ttft"]["mean"]


def test_prefix_affinity_raises_hit_rate_and_lowers_ttft_on_the_mooncake_trace():
    trace = shared_data("traces", "mooncake_fast25", "conversation_trace.jsonl")
    # H200s: the conversation trace reuses contexts minutes apart, which needs the larger KV cache to matter
    cfg = config(trace=str(trace), limit=1500, time_scale=0.5, gpu="h200", seed=3, replicas=4, max_model_len=131072)
    rr, pa = affinity_vs_round_robin(cfg)
    assert pa["prefix_cache"]["hit_rate"] > 1.5 * rr["prefix_cache"]["hit_rate"]
    assert pa["latency_s"]["ttft"]["mean"] < 0.95 * rr["latency_s"]["ttft"]["mean"]


def test_sglang_longest_prefix_first_raises_hits_under_a_backlog():
    # 160 requests from 8 groups, each sharing a 4k-token prefix, arriving interleaved within 1 s, on a KV
    # cache that holds about seven such requests at once. First come first served cycles through the groups
    # and evicts each prefix before its next use; longest-prefix-match serves the groups whose prefix is cached.
    n, groups, blocks = 160, 8, 8
    chains = [tuple(range(g * 100, g * 100 + blocks)) + (1000 + i,) for i, g in enumerate(np.arange(n) % groups)]
    w = Workload("groups", np.full(n, blocks * 512 + 512), np.full(n, 16), arrival=np.linspace(0.0, 1.0, n),
                 prefix_ids=chains)
    base = config(num_gpu_blocks=2000, max_model_len=16384, qps=1.0, requests=n)
    fcfs = run_simulation(base, workload=w).summary
    lpm = run_simulation(replace(base, policy="sglang"), workload=w).summary
    assert lpm["prefix_cache"]["hit_rate"] > 1.5 * fcfs["prefix_cache"]["hit_rate"]
    assert lpm["latency_s"]["ttft"]["mean"] < 0.7 * fcfs["latency_s"]["ttft"]["mean"]


# --- Priority and fairness ---

def light_p99_bound(result, budget_steps=3):
    """The fair policy admits a waiting client's request at the next step (preempting the flooder if needed),
    and a chat prompt then needs at most two budget-sized steps: three of the run's longest steps."""
    return budget_steps * float(result.steps["duration"].max())


def test_fair_policy_bounds_a_light_clients_ttft_against_a_flood():
    base = config(workload="chat", qps=80, requests=3000, seed=3, clients="flood:0.97,light:0.03")
    fair = run(base, policy="fair")
    fcfs = run(base, policy="vllm-v1")
    bound = light_p99_bound(fair)
    assert fair.summary["clients"]["light"]["ttft_p99_s"] <= bound
    assert fcfs.summary["clients"]["light"]["ttft_p99_s"] > 10 * bound  # first come first served: no bound
    assert fair.summary["throughput"]["output_tokens_per_s"] > 0.97 * fcfs.summary["throughput"]["output_tokens_per_s"]


def test_priority_preempts_for_the_important_class():
    base = config(workload="chat", qps=80, requests=3000, seed=3, clients="bulk:0.9:1,interactive:0.1:0")
    prio = run(base, policy="priority").summary
    fcfs = run(base, policy="vllm-v1").summary
    assert prio["clients"]["interactive"]["ttft_p99_s"] < 1.0
    assert fcfs["clients"]["interactive"]["ttft_p99_s"] > 10.0
    assert prio["requests"]["preemptions"] > fcfs["requests"]["preemptions"]  # room made by preempting bulk
    assert math.isclose(prio["requests"]["completed"], 3000)
