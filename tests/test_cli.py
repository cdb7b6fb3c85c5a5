"""The command line: results, determinism, and bad input as one line with a non-zero exit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.config import load_config, make_config, parse_duration
from servesim.errors import ServesimError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--model", "llama-3.1-8b", "--gpu", "h100", "--workload", "chat", "--requests", "300", "--qps", "8"]


def servesim(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "servesim.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_simulate_writes_results_with_config_version_and_seed(tmp_path):
    r = servesim("simulate", *SMALL, "--slo-ttft", "200ms", "--slo-tpot", "20ms", "-o", str(tmp_path / "run"), "--seed", "4")
    assert r.returncode == 0, r.stderr
    assert "TTFT" in r.stdout and "goodput" in r.stdout
    doc = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert doc["seed"] == 4 and doc["servesim_version"] and doc["config"]["slo_ttft"] == 0.2
    assert doc["summary"]["requests"]["completed"] == 300
    requests = pq.read_table(tmp_path / "run" / "requests.parquet")
    assert requests.num_rows == 300
    itl = requests.column("itl_s").to_pylist()
    outputs = requests.column("output_tokens").to_pylist()
    assert [len(x) for x in itl] == [o - 1 for o in outputs]  # every inter-token latency of every request
    steps = pq.read_table(tmp_path / "run" / "steps.parquet")
    assert steps.num_rows == doc["summary"]["engine"]["steps"]


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        assert servesim("simulate", *SMALL, "-o", str(tmp_path / name), "--quiet").returncode == 0
    for f in ("summary.json", "requests.parquet", "steps.parquet", "config.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_same_bytes_whatever_the_blas_thread_count(tmp_path):
    # ~30k steps: enough that OpenBLAS splits a dot product over threads (np.dot once gave other last digits)
    args = ["simulate", "--model", "llama-3.1-8b", "--gpu", "h100", "--workload", "chat", "--requests", "3000",
            "--qps", "10", "--quiet"]
    for threads in ("1", "4"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        assert servesim(*args, "-o", str(tmp_path / threads), env=env).returncode == 0
    assert (tmp_path / "1" / "summary.json").read_bytes() == (tmp_path / "4" / "summary.json").read_bytes()


def test_json_prints_only_json():
    r = servesim("simulate", *SMALL, "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["requests"]["completed"] == 300


@pytest.mark.parametrize("args,message", [
    (["--model", "llama-9b"], "unknown model 'llama-9b'"),
    (["--gpu", "h1000"], "unknown GPU 'h1000'"),
    (["--model", "llama-3.1-70b", "--gpu", "h100"], "needs 141.1 GB of weights per GPU"),
    (["--qps", "-2"], "--qps must be > 0"),
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--dtype", "fp8", "--gpu", "a100"], "a100 has no FP8"),
    (["--tp", "3"], "--tp 3 is not supported"),
    (["--slo-ttft", "fast"], "is not a duration"),
    (["--trace", "/nonexistent.csv"], "does not exist"),
    (["--isl", "200", "--osl", "10"], "give --qps R (open loop) or --concurrency N"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    r = servesim("simulate", "--requests", "20", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_overlong_requests_are_rejected_and_counted():
    r = servesim("simulate", "--isl", "200", "--osl", "10", "--max-model-len", "150", "--requests", "5", "--qps", "1", "--json")
    summary = json.loads(r.stdout)
    assert summary["requests"]["rejected"] == 5 and summary["requests"]["completed"] == 0


def test_yaml_config_and_flags_override(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model: llama-3.1-8b\nworkload: {workload: chat, qps: 4, requests: 100}\nslo: {ttft: 300ms}\nseed: 2\n")
    values = load_config(f)
    assert values == {"model": "llama-3.1-8b", "workload": "chat", "qps": 4.0, "requests": 100, "slo_ttft": 0.3, "seed": 2}
    assert make_config(values, seed=5).seed == 5
    r = servesim("simulate", "-c", str(f), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["requests"]["total"] == 100


def test_yaml_unknown_key_names_file_and_line(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("model: llama-3.1-8b\nengine:\n  max_num_seq: 8\n")
    with pytest.raises(ServesimError, match=r"run.yaml:3: unknown setting 'max_num_seq'; valid settings: .*max_num_seqs"):
        load_config(f)
    f.write_text("model: [unclosed\n")
    with pytest.raises(ServesimError, match=r"run.yaml:\d+: not valid YAML"):
        load_config(f)


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1e4, allow_nan=False), st.sampled_from(["", "s", "ms", "m"]))
def test_durations_parse(value, unit):
    scale = {"": 1, "s": 1, "ms": 1e-3, "m": 60}[unit]
    assert parse_duration(f"{value!r}{unit}") == pytest.approx(value * scale)


def test_listing_commands():
    for cmd, expected in (("models", "qwen3-32b"), ("gpus", "mi300x"), ("workloads", "Mooncake")):
        r = servesim(cmd)
        assert r.returncode == 0 and expected in r.stdout
