"""The fitted step-cost model, its calibration from traces, and calibrated profiles in `simulate`."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.config import make_config
from servesim.errors import ServesimError
from servesim.perf.base import decode_shape
from servesim.perf.calibrate import fit_step_model, trace_samples, trace_shape
from servesim.perf.linear import LinearStepModel, shape_features
from servesim.perf.profile import CalibratedProfile, ServingOverhead, find_profile, load_profile
from servesim.simulate import run_simulation
from servesim.validate.scenario import TINY_LLAMA

GOLDEN = Path(__file__).parent / "golden"
TRUE = LinearStepModel(overhead=4e-3, per_token=6e-4, per_seq=1e-4, per_attn_pair=2e-7, per_kv_token=1.5e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e-2), min_size=5, max_size=5), st.integers(1, 300), st.integers(1, 10**6),
       st.integers(1, 600))
def test_decode_span_equals_step_time_bit_for_bit(coefs, seqs, kv, steps):
    model = LinearStepModel(*coefs)
    span = model.decode_span(seqs, kv, steps)
    one_by_one = [model.step_time(decode_shape(seqs, kv + seqs * k)) for k in range(steps)]
    assert span.tolist() == one_by_one


def synthetic_trace(model: LinearStepModel, stalls: int = 0, noise: float = 0.0, seed: int = 0) -> dict:
    """The golden mixed run's real schedule, timed by `model` (plus noise and a few long stalls)."""
    trace = json.loads((GOLDEN / "mixed_long_run.json").read_text())
    rng = np.random.default_rng(seed)
    for step in trace["steps"]:
        step["duration_s"] = model.step_time(trace_shape(step)) * (1 + noise * rng.standard_normal())
    for i in rng.choice(len(trace["steps"]), stalls, replace=False):
        trace["steps"][i]["duration_s"] += 0.2
    return trace


def test_fit_recovers_the_coefficients_of_noiseless_steps():
    fit = fit_step_model(*trace_samples([synthetic_trace(TRUE)]))
    for name, value in TRUE.as_dict().items():
        assert getattr(fit.model, name) == pytest.approx(value, rel=1e-6), name
    assert fit.median_abs_rel_error < 1e-9


def test_fit_ignores_stalls_and_keeps_terms_physical():
    trace = synthetic_trace(TRUE, stalls=80, noise=0.02, seed=1)
    fit = fit_step_model(*trace_samples([trace]))
    assert fit.kept <= fit.steps - 70  # the stalls were dropped
    for name, value in TRUE.as_dict().items():
        assert getattr(fit.model, name) == pytest.approx(value, rel=0.1), name
    assert all(v >= 0 for v in fit.model.as_dict().values())


def test_fit_needs_timed_steps():
    trace = json.loads((GOLDEN / "prefix_same_step.json").read_text())
    for step in trace["steps"]:
        step.pop("duration_s", None)
    with pytest.raises(ServesimError, match="timed steps"):
        trace_samples([trace])


def test_trace_shape_reads_prefill_and_decode():
    shape = trace_shape({"tokens": {"0": 1, "1": 64, "2": 1}, "context": {"0": 100, "1": 32, "2": 9}})
    assert shape.num_tokens == 66 and shape.num_seqs == 3
    assert shape.decode_seqs == 2 and shape.decode_kv_tokens == 101 + 10
    assert shape.prefill_tokens == 64 and shape.prefill_attn_pairs == 64 * 32 + 64 * 65 // 2
    assert shape_features(shape) == (1.0, 66.0, 3.0, float(64 * 32 + 64 * 65 // 2), 111.0)


def make_profile(**serving) -> CalibratedProfile:
    return CalibratedProfile("test-cpu", dict(TINY_LLAMA), TRUE, ServingOverhead(**serving), kv_cache_bytes=2**30,
                             scheduler={"block_size": 32, "max_num_batched_tokens": 512, "max_num_seqs": 16,
                                        "max_model_len": 2048})


@pytest.fixture
def model_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_LLAMA))
    return path


def sim(cfg_values, profile=None, **flags):
    cfg = make_config({}, **cfg_values, **flags)
    return run_simulation(cfg, profile=profile)


def test_profile_roundtrip_and_lookup_by_name(tmp_path, monkeypatch, model_config):
    monkeypatch.setenv("SERVESIM_PROFILES", str(tmp_path / "profiles"))
    profile = make_profile(per_step=1e-3, per_seq=2e-5, frontend_latency=0.01)
    path = profile.save()
    assert path == tmp_path / "profiles" / "test-cpu.yaml"
    again = find_profile("test-cpu")
    assert again.step_model == TRUE and again.serving == profile.serving
    assert find_profile("h100") is None
    result = sim({"model_config": str(model_config), "gpu": "test-cpu", "block_size": 32, "isl": 100, "osl": 20,
                  "concurrency": 2, "requests": 6})
    assert result.meta["cost_model"] == "calibrated profile test-cpu"
    assert result.engine_config.max_num_seqs == 16  # the served limit, from the profile
    assert result.engine_config.num_gpu_blocks == 2**30 // (32 * 2048)


def test_profile_refuses_another_model_and_block_size(tmp_path, model_config):
    path = make_profile().save(tmp_path / "p.yaml")
    with pytest.raises(ServesimError, match="calibrated for another model"):
        sim({"model": "llama-3.1-8b", "gpu": str(path), "isl": 10, "osl": 5, "concurrency": 1, "requests": 2})
    with pytest.raises(ServesimError, match="pass --block-size 32"):
        sim({"model_config": str(model_config), "gpu": str(path), "isl": 10, "osl": 5, "concurrency": 1, "requests": 2})


def test_not_a_profile(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("kind: servesim-calibrated-profile/1\nstep_model: {overhead: 1}\n")
    with pytest.raises(ServesimError, match="step_model lacks per_token"):
        load_profile(bad)


def test_frontend_latency_adds_to_ttft_and_e2e_only(model_config):
    base = {"model_config": str(model_config), "gpu": "unused", "block_size": 32, "isl": 64, "osl": 16,
            "qps": 2.0, "requests": 20, "seed": 3}
    plain = sim(base, make_profile(per_step=1e-3))
    shifted = sim(base, make_profile(per_step=1e-3, frontend_latency=0.05))
    a, b = plain.requests, shifted.requests
    np.testing.assert_allclose((b["first_token"] - b["arrival"]) - (a["first_token"] - a["arrival"]), 0.05)
    np.testing.assert_allclose((b["finished"] - b["first_token"]), (a["finished"] - a["first_token"]))


def test_frontend_latency_delays_closed_loop_clients(model_config):
    base = {"model_config": str(model_config), "gpu": "unused", "block_size": 32, "isl": 64, "osl": 16,
            "concurrency": 1, "requests": 5}
    plain = sim(base, make_profile())
    shifted = sim(base, make_profile(frontend_latency=0.05))
    e2e = shifted.requests["finished"] - shifted.requests["arrival"]
    np.testing.assert_allclose(e2e, plain.requests["finished"] - plain.requests["arrival"] + 0.05)
    # one client: each request leaves when the last answer has reached it, so the engine idles 50 ms between
    gaps = shifted.requests["arrival"][1:] - shifted.requests["finished"][:-1]
    np.testing.assert_allclose(gaps, 0.0, atol=1e-12)
    assert shifted.steps["start"][-1] > plain.steps["start"][-1] + 4 * 0.05 - 1e-9
