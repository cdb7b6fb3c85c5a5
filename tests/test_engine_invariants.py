"""Invariants of the engine that must hold for any workload and configuration."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_engine, run_all_at_once
from servesim.engine.requests import FINISHED


class CountingCost:
    """Unit step time, and counts the tokens each step schedules."""

    def __init__(self):
        self.tokens = 0

    def step_time(self, shape):
        self.tokens += shape.num_tokens
        return 1.0

    def decode_span(self, num_seqs, kv_tokens, steps):
        return np.ones(steps)


workloads = st.lists(st.tuples(st.integers(1, 700), st.integers(1, 120)), min_size=1, max_size=40)
engines = st.fixed_dictionaries({
    "block_size": st.sampled_from([16, 32, 48]),  # 48: not a power of two (the engine divides, not shifts)
    "num_gpu_blocks": st.integers(50, 400),
    "max_num_batched_tokens": st.sampled_from([64, 256, 2048]),
    "max_num_seqs": st.integers(1, 32),
    "enable_prefix_caching": st.booleans(),
    "long_prefill_token_threshold": st.sampled_from([0, 0, 48]),
})


def _run(reqs, eng_kwargs, use_spans=False, prefix=None):
    eng_kwargs = dict(eng_kwargs, max_model_len=min(1024, (eng_kwargs["num_gpu_blocks"] - 1) * eng_kwargs["block_size"]))
    prompts = [min(p, eng_kwargs["max_model_len"] - o) if p + o > eng_kwargs["max_model_len"] else p for p, o in reqs]
    prompts = [max(1, p) for p in prompts]
    outputs = [min(o, eng_kwargs["max_model_len"] - 1) for _, o in reqs]
    cost = CountingCost()
    eng = make_engine(prompts, outputs, cost=cost, use_spans=use_spans, log_schedule=True, prefix_ids=prefix,
                      prefix_block_tokens=16, **eng_kwargs)
    run_all_at_once(eng)
    return eng, cost, prompts, outputs


@settings(max_examples=60, deadline=None)
@given(workloads, engines)
def test_every_request_finishes_once_and_tokens_are_conserved(reqs, eng_kwargs):
    eng, cost, prompts, outputs = _run(reqs, eng_kwargs)
    req = eng.req
    rejected = sum(1 for r in range(req.n) if req.status[r] != FINISHED)
    assert rejected == eng.num_rejected
    finished = [r for r in range(req.n) if req.status[r] == FINISHED]
    assert len(finished) == eng.num_finished == req.n - eng.num_rejected
    for r in finished:
        assert req.num_output[r] == outputs[r]
    # tokens scheduled = prompt + output - 1 per request, plus everything recomputed after preemptions
    scheduled = sum(n for sched, _ in eng.schedule_log for _, n in sched)
    assert scheduled == cost.tokens
    hits = sum(req.hit_tokens)
    recomputed = scheduled - sum(prompts[r] + outputs[r] - 1 for r in finished)
    assert recomputed + hits >= 0
    if sum(req.num_preemptions) == 0:
        assert recomputed + hits == 0


@settings(max_examples=60, deadline=None)
@given(workloads, engines)
def test_kv_never_over_capacity_and_budget_respected(reqs, eng_kwargs):
    eng, _, _, _ = _run(reqs, eng_kwargs)
    steps = eng.steps.as_numpy()
    usable = eng_kwargs["num_gpu_blocks"] - 1
    assert (steps["kv_blocks_used"] <= usable).all()
    assert (steps["kv_blocks_used"] >= 0).all()
    assert (steps["num_tokens"] <= eng_kwargs["max_num_batched_tokens"]).all()
    assert (steps["running"] <= eng_kwargs["max_num_seqs"]).all()
    assert eng.kv.num_free == usable  # everything returned at the end


@settings(max_examples=40, deadline=None)
@given(workloads, engines)
def test_spans_equal_single_steps(reqs, eng_kwargs):
    a, _, _, _ = _run(reqs, eng_kwargs, use_spans=False)
    b, _, _, _ = _run(reqs, eng_kwargs, use_spans=True)
    assert a.schedule_log == b.schedule_log
    ra, rb = a.req.outputs_as_numpy(), b.req.outputs_as_numpy()
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
    sa, sb = a.steps.as_numpy(), b.steps.as_numpy()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 200), st.integers(1, 300), st.integers(1, 30)),
                min_size=2, max_size=30), st.booleans())
def test_prefix_hits_never_exceed_shared_prefix(groups, tight):
    """Requests in a group share their first `shared` tokens; no request may hit more than that."""
    prompts, outputs, prefix = [], [], []
    for group, shared, extra, out in groups:
        prompts.append(shared + extra)
        outputs.append(out)
        prefix.append(tuple(group * 1000 + j for j in range(shared // 16)))
    eng = make_engine(prompts, outputs, prefix_ids=prefix, prefix_block_tokens=16, block_size=16,
                      num_gpu_blocks=60 if tight else 2000, max_num_batched_tokens=256, max_num_seqs=8,
                      max_model_len=900)
    run_all_at_once(eng)
    req = eng.req
    for r in range(req.n):
        shared = len(prefix[r]) * 16
        if req.num_preemptions[r] == 0:
            assert req.hit_tokens[r] <= shared
        assert req.cached_tokens[r] <= min(shared, prompts[r] - 1)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([2.0, 8.0, 40.0]), st.sampled_from([60, 400, 5000]))
def test_spans_equal_single_steps_with_a_real_clock_and_arrivals(seed, qps, blocks):
    """Roofline step times and open-loop arrivals: the span path must not move any token by a bit."""
    from servesim.cluster.driver import run_replica
    from servesim.config import RunConfig
    from servesim.engine.config import EngineConfig
    from servesim.engine.engine import ReplicaEngine
    from servesim.engine.policies import make_policy
    from servesim.engine.requests import RequestTable
    from servesim.hardware import get_device
    from servesim.models import get_model
    from servesim.perf import RooflineModel
    from servesim.workload.build import build_workload

    w = build_workload(RunConfig(workload="chat", requests=150, qps=qps, seed=seed))
    cost = RooflineModel(get_model("llama-3.1-8b"), get_device("h100"), step_overhead=0.002)
    cfg = EngineConfig(num_gpu_blocks=blocks, block_size=16, max_num_batched_tokens=2048, max_num_seqs=64,
                       max_model_len=min(16384, (blocks - 1) * 16))
    out = []
    for spans in (False, True):
        table = RequestTable(w.prompt_len, w.output_len)
        eng = ReplicaEngine(cfg, cost, make_policy("vllm-v1"), table, use_spans=spans)
        run_replica(eng, w)
        out.append((table.outputs_as_numpy(), eng.steps.as_numpy()))
    (ra, sa), (rb, sb) = out
    for key in ra:
        np.testing.assert_array_equal(ra[key], rb[key], err_msg=key)
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
