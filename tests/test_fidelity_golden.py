"""servesim's engine against every schedule recorded from the real vLLM 0.32 in tests/golden/ (no vLLM needed).

Each SCENARIO.yaml there has a SCENARIO.json that `servesim validate record` wrote from live vLLM; `make fidelity`
re-records them. Here the simulated schedule must equal the recorded one step for step: the same requests get
the same tokens and the same requests are preempted.
"""

from pathlib import Path

import pytest

from servesim.validate.scenario import load_scenario
from servesim.validate.schedule import describe_step, first_mismatch, replay, trace_steps
from servesim.validate.trace import MODELLED_VLLM, load_trace

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted(GOLDEN.glob("*.yaml"))


def test_enough_golden_scenarios():
    assert len(SCENARIOS) >= 10
    for path in SCENARIOS:
        assert path.with_suffix(".json").exists(), f"{path.name} has no recorded trace; run `make golden`"


@pytest.mark.parametrize("use_spans", [False, True], ids=["step-by-step", "spans"])
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_schedule_matches_vllm(path, use_spans):
    sc = load_scenario(path)
    trace = load_trace(path.with_suffix(".json"))
    assert trace["vllm_version"] == MODELLED_VLLM
    assert trace["scenario_digest"] == sc.digest(), "scenario changed since its trace was recorded: `make golden`"
    assert not trace["async_scheduling"]
    sim, real = replay(sc, use_spans), trace_steps(trace)
    miss = first_mismatch(sim, real)
    assert miss is None, (f"step {miss.step}: servesim [{describe_step(miss.sim)}] "
                          f"!= vLLM [{describe_step(miss.real)}]")


def test_golden_set_covers_the_issue():
    """The behaviours the scenarios exist to pin actually happen in the recorded vLLM runs."""
    seen = {"preemptions": 0, "prefix_hits": 0, "mid_run_arrivals": 0, "chunked_prompts": 0, "max_requests": 0}
    for path in SCENARIOS:
        sc = load_scenario(path)
        trace = load_trace(path.with_suffix(".json"))
        seen["preemptions"] = max(seen["preemptions"], sum(len(s["preempted"]) for s in trace["steps"]))
        seen["mid_run_arrivals"] += sum(a > 0 for a in sc.arrival_step)
        seen["max_requests"] = max(seen["max_requests"], sc.n)
        first = {}
        for s in trace["steps"]:
            for r, c in s["context"].items():
                first.setdefault(r, c)
                if c > 0 and s["tokens"][r] > 1 and c % sc.engine.block_size:
                    seen["chunked_prompts"] += 1
        seen["prefix_hits"] += sum(1 for c in first.values() if c > 0)
    assert seen["preemptions"] >= 20
    assert seen["prefix_hits"] >= 20
    assert seen["mid_run_arrivals"] >= 100
    assert seen["chunked_prompts"] >= 10
    assert seen["max_requests"] >= 200


def _chain_keys(tokens, bs):
    keys, parent = [], None
    for i in range(len(tokens) // bs):
        parent = hash((parent, tuple(tokens[i * bs:(i + 1) * bs])))
        keys.append(parent)
    return keys


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_token_ids_share_exactly_the_declared_prefixes(path):
    """Two prompt blocks have equal vLLM-style chained hashes iff servesim gives them the same block key."""
    from servesim.engine.requests import RequestTable

    sc = load_scenario(path)
    bs = sc.engine.block_size
    table = RequestTable(sc.prompt_len, sc.output_len, sc.prefix_ids(), prefix_block_tokens=bs)
    key = table.block_key_fn(bs)
    real_to_sim, sim_to_real = {}, {}
    for r, tokens in enumerate(sc.token_ids):
        for i, real in enumerate(_chain_keys(tokens, bs)):
            sim = key(r, i)
            assert real_to_sim.setdefault(real, sim) == sim, f"request {r} block {i}: tokens shared, keys differ"
            assert sim_to_real.setdefault(sim, real) == real, f"request {r} block {i}: keys shared, tokens differ"


def test_golden_set_evicts_cached_prefixes(monkeypatch):
    """Prefix-cache evictions happen in the golden runs (and the schedules still match, above)."""
    from servesim.validate import schedule

    engines = []

    def make_engine(*args, make=schedule.make_engine):
        engines.append(make(*args))
        return engines[-1]

    monkeypatch.setattr(schedule, "make_engine", make_engine)
    for name in ("prefix_groups", "prefix_preempt_resume", "block_size_128"):
        replay(load_scenario(GOLDEN / f"{name}.yaml"))
        assert engines[-1].kv.num_evicted > 0, name
