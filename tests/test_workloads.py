"""Workload generation: presets reproduce the statistics they were fitted on; arrivals and closed loop."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, shared_data
from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.workload import arrivals, presets
from servesim.workload.build import build_workload

ROOT = Path(__file__).resolve().parents[1]


def test_poisson_and_gamma_rates_and_burstiness():
    rng = np.random.default_rng(0)
    p = arrivals.poisson(5.0, 50_000, rng)
    gaps = np.diff(p)
    assert 1 / gaps.mean() == pytest.approx(5.0, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)
    g = np.diff(arrivals.gamma(5.0, 3.0, 50_000, rng))
    assert 1 / g.mean() == pytest.approx(5.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.1)
    assert np.diff(arrivals.constant(4.0, 5)).tolist() == [0.25] * 4


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_non_positive_rate_is_refused(bad):
    with pytest.raises(ServesimError, match="rate must be > 0"):
        arrivals.poisson(bad, 10, np.random.default_rng(0))
    with pytest.raises(ServesimError, match="--qps must be > 0"):
        build_workload(RunConfig(qps=bad))


@pytest.mark.parametrize("name", ["chat", "code", "longctx", "sharegpt"])
def test_preset_lengths_match_the_fitted_trace(name):
    p = presets.get_preset(name)
    prompt, output = presets.preset_lengths(name, 200_000, np.random.default_rng(1))
    assert prompt.mean() == pytest.approx(p["prompt_mean"], rel=0.03)
    assert output.mean() == pytest.approx(p["output_mean"], rel=0.03)
    assert np.median(prompt) == pytest.approx(np.interp(0.5, p["probs"], p["prompt_quantiles"]), rel=0.03)


def test_chat_preset_default_rate_and_burstiness():
    w = build_workload(RunConfig(workload="chat", requests=20_000, seed=3))
    gaps = np.diff(w.arrival)
    assert 1 / gaps.mean() == pytest.approx(5.53, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.094, rel=0.1)


def test_longctx_preset_reuses_prefixes_like_mooncake():
    w = build_workload(RunConfig(workload="longctx", requests=4000, qps=1.0))
    stats = presets.get_preset("longctx")["prefix"]
    seen, reused = set(), 0
    for ids in w.prefix_ids:
        reused += bool(ids) and ids[0] in seen
        seen.update(ids)
    assert reused / len(w) == pytest.approx(stats["reuse_probability"], abs=0.05)


def test_sharegpt_needs_a_rate():
    with pytest.raises(ServesimError, match="no arrival times: give --qps"):
        build_workload(RunConfig(workload="sharegpt"))


def test_closed_loop_and_fixed_lengths():
    w = build_workload(RunConfig(concurrency=8, isl=100, osl=20, requests=50))
    assert w.closed_loop and w.concurrency == 8 and set(w.prompt_len) == {100}
    with pytest.raises(ServesimError, match="exclude each other"):
        build_workload(RunConfig(concurrency=8, qps=2.0))


def test_seeds_give_identical_workloads_and_differ_across_seeds():
    a, b, c = (build_workload(RunConfig(workload="chat", requests=500, seed=s)) for s in (7, 7, 8))
    assert np.array_equal(a.arrival, b.arrival) and np.array_equal(a.prompt_len, b.prompt_len)
    assert not np.array_equal(a.prompt_len, c.prompt_len)


def test_shipped_presets_are_what_the_fit_script_produces(tmp_path):
    shared_data("traces")
    out = tmp_path / "presets.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_presets.py"), "--data", str(SHARED_DATA), "--out", str(out)],
                   check=True, capture_output=True)
    assert out.read_text() == (ROOT / "src" / "servesim" / "data" / "presets.json").read_text()
