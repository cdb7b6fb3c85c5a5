"""Cluster settings from the command line and from YAML; bad cluster input as one clear line."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from servesim.config import load_config, make_config
from servesim.simulate import run_simulation

SMALL = ["--model", "llama-3.1-8b", "--workload", "chat", "--requests", "120", "--qps", "10", "--seed", "3"]


def servesim(*args):
    return subprocess.run([sys.executable, "-m", "servesim.cli", *args], capture_output=True, text=True)


def test_disaggregated_run_writes_timeline_columns_and_same_bytes(tmp_path):
    args = [*SMALL, "--prefill-pool", "h100:1x1", "--decode-pool", "h100:1x2", "--router", "least-outstanding",
            "--kv-link", "network", "--kv-layerwise", "--quiet"]
    for name in ("a", "b"):
        r = servesim("simulate", *args, "-o", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
    for f in ("summary.json", "requests.parquet", "steps.parquet", "config.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    req = pq.read_table(tmp_path / "a" / "requests.parquet").to_pydict()
    for col in ("replica", "decode_replica", "prefill_queue_s", "prefill_s", "transfer_s", "decode_queue_s"):
        assert col in req
    assert set(req["replica"]) == {0} and set(req["decode_replica"]) == {1, 2}
    steps = pq.read_table(tmp_path / "a" / "steps.parquet").to_pydict()
    assert set(steps["replica"]) == {0, 1, 2}
    doc = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [r["role"] for r in doc["replicas"]] == ["prefill", "decode", "decode"]
    assert doc["meta"]["cluster"]["kv_link"]["layerwise"] is True


def test_cluster_yaml_equals_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: llama-3.1-8b\n"
        "workload: {workload: chat, qps: 10, requests: 120}\n"
        "cluster:\n"
        "  router: power-of-two\n"
        "  prefill_pool: {gpu: h100, tp: 1, count: 2}\n"
        "  decode_pool: h100:2x1\n"
        "  kv_link: network\n"
        "seed: 3\n")
    from_yaml = make_config(load_config(path))
    from_flags = make_config(None, model="llama-3.1-8b", workload="chat", qps=10, requests=120, seed=3,
                             router="power-of-two", prefill_pool="h100:1x2", decode_pool="h100:2x1", kv_link="network")
    assert from_yaml == from_flags
    a, b = run_simulation(from_yaml).summary, run_simulation(from_flags).summary
    assert a == b


def test_replicas_and_policy_flags():
    r = servesim("simulate", *SMALL, "--replicas", "2", "--router", "least-kv", "--policy", "sarathi", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["cluster"]["gpus"] == 2 and len(s["replicas"]) == 2
    assert s["requests"]["completed"] == 120


def test_clients_summary():
    r = servesim("simulate", *SMALL, "--clients", "chat:0.5:0,batch:0.5:1", "--policy", "priority", "--json")
    assert r.returncode == 0, r.stderr
    clients = json.loads(r.stdout)["clients"]
    assert set(clients) == {"chat", "batch"}
    assert clients["chat"]["requests"] + clients["batch"]["requests"] == 120


@pytest.mark.parametrize("args,message", [
    (["--router", "fastest"], "unknown router 'fastest'; valid choices: round-robin, least-outstanding, least-kv, power-of-two, prefix-affinity"),
    (["--policy", "fifo"], "unknown policy 'fifo'; valid choices: vllm-v1, sarathi, splitfuse, orca, static, sglang, priority, fair"),
    (["--prefill-pool", "h100:1x1", "--decode-pool", "mi300x:1x1"],
     "no link between the prefill pool (h100) and the decode pool (mi300x)"),
    (["--prefill-pool", "h100:1x1", "--decode-pool", "a100:1x1", "--kv-link", "nvlink"],
     "--kv-link nvlink: no NVLink between the pools: prefill GPU h100 and decode GPU a100 differ"),
    (["--model", "llama-3.1-70b", "--prefill-pool", "h200:4x1", "--decode-pool", "h100:2x1"],
     "decode pool h100:2x1: the KV cache holds"),
    (["--prefill-pool", "h100:1x1"], "--prefill-pool needs its partner"),
    (["--prefill-pool", "h100/1x1", "--decode-pool", "h100:1x1"], "--prefill-pool 'h100/1x1' is not GPU:TPxN"),
    (["--prefill-pool", "h100:1x1", "--decode-pool", "h100:1x1", "--replicas", "3"], "--replicas sizes co-located serving"),
    (["--kv-link", "carrier-pigeon"], "unknown KV link 'carrier-pigeon'; valid choices: auto, nvlink, network"),
    (["--clients", "a:x"], "--clients 'a:x': in 'a:x' the share must be a number"),
    (["--replicas", "0"], "--replicas must be >= 1, got 0"),
])
def test_bad_cluster_input_is_one_line(args, message):
    r = servesim("simulate", *SMALL, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_pool_in_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: llama-3.1-8b\ncluster:\n  prefill_pool: {gpu: h100, tensor: 2}\n")
    r = servesim("simulate", "-c", str(path), "--requests", "10")
    assert r.returncode == 2
    assert f"{path}:3: prefill_pool takes gpu, tp and count" in r.stderr


def test_clients_are_drawn_by_share_without_moving_other_draws():
    from servesim.workload.build import build_workload

    plain = build_workload(make_config(None, workload="chat", qps=5, requests=4000, seed=9))
    tagged = build_workload(make_config(None, workload="chat", qps=5, requests=4000, seed=9, clients="a:0.25:1,b:0.75"))
    assert (plain.prompt_len == tagged.prompt_len).all() and (plain.arrival == tagged.arrival).all()
    assert tagged.client_names == ["a", "b"]
    assert abs((tagged.client == 0).mean() - 0.25) < 0.03
    assert ((tagged.client == 0) == (tagged.priority == 1)).all()
