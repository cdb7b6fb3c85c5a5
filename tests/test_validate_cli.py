"""`servesim validate`: bad scenarios, a missing validation environment, version warnings, mismatch reports."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.errors import ServesimError
from servesim.validate.scenario import load_scenario

GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()

BASE = """seed: 1
engine:
  block_size: 32
  num_gpu_blocks: 64
  max_model_len: 1024
requests:
  - {prompt: 100, output: 10}
"""


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    (BASE.replace("seed: 1", "seed: 1\nspeed: 3"), "s.yaml:2: unknown field 'speed'; valid fields: name, description"),
    (BASE.replace("max_model_len: 1024", "max_model_len: 1024\n  max_num_seq: 4"), "s.yaml:6: unknown field 'max_num_seq'"),
    (BASE.replace("{prompt: 100, output: 10}", "{prompt: 100, output: 10, arival_step: 4}"), "s.yaml:7: unknown field 'arival_step'"),
    (BASE.replace("{prompt: 100, output: 10}", "{prompt: 1000, output: 100}"),
     "s.yaml:7: request 0: prompt 1000 + output 100 = 1100 tokens is longer than max_model_len 1024"),
    (BASE.replace("num_gpu_blocks: 64", "num_gpu_blocks: 40000"),
     "s.yaml:4: num_gpu_blocks 40000 need 2.44 GiB of KV cache (64 KiB a block) but kv_cache_gib is 1"),
    (BASE.replace("num_gpu_blocks: 64", "num_gpu_blocks: 20"), "the KV cache holds 608 tokens"),
    (BASE.replace("block_size: 32", "block_size: 16"), "block_size 16 is not a multiple of 32"),
    (BASE.replace("{prompt: 100, output: 10}", "{prompt: 100, output: 10, group: a, prefix: 100}"),
     "prefix 100 must be shorter than the prompt"),
    (BASE.replace("{prompt: 100, output: 10}", "{prompt: 100, output: 10, group: a}"), "give both 'group' and 'prefix'"),
    (BASE.replace("requests:\n  - {prompt: 100, output: 10}\n", ""), "missing field 'requests'"),
    (BASE.replace("{prompt: 100, output: 10}", "{generate: 5, prompt: [50, 10], output: 4}"), "prompt: LOW 50 > HIGH 10"),
])
def test_bad_scenarios_give_one_clear_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ServesimError) as e:
        load_scenario(path)
    assert expected in str(e.value)
    result = runner.invoke(app, ["validate", "schedule", str(path), "--against", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_record_without_the_validation_env_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SERVESIM_VLLM_PYTHON", raising=False)
    path = write(tmp_path, BASE)
    result = runner.invoke(app, ["validate", "record", str(path), "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2
    assert "make venv-vllm" in result.output and "SERVESIM_VLLM_PYTHON" in result.output
    monkeypatch.setenv("SERVESIM_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    result = runner.invoke(app, ["validate", "record", str(path), "-o", str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_golden_scenario_passes_from_the_cli(tmp_path):
    result = runner.invoke(app, ["validate", "schedule", str(GOLDEN / "prefix_same_step.yaml"),
                                 "--against", str(GOLDEN / "prefix_same_step.json")])
    assert result.exit_code == 0, result.output
    assert "identical" in result.output


def test_a_changed_step_is_reported_side_by_side(tmp_path):
    trace = json.loads((GOLDEN / "small_budget.json").read_text())
    step = trace["steps"][7]
    rid = next(iter(step["tokens"]))
    step["tokens"][rid] += 1
    (tmp_path / "small_budget.json").write_text(json.dumps(trace))
    shutil.copy(GOLDEN / "small_budget.yaml", tmp_path / "small_budget.yaml")
    result = runner.invoke(app, ["validate", "schedule", str(tmp_path / "small_budget.yaml"), "--against", str(tmp_path)])
    assert result.exit_code == 1
    assert "first difference at step 7" in result.output
    assert f"{rid}:{step['tokens'][rid]}" in result.output  # the vLLM column shows the recorded step


def test_a_trace_from_another_vllm_version_warns_naming_both(tmp_path):
    trace = json.loads((GOLDEN / "prefix_same_step.json").read_text())
    trace["vllm_version"] = "0.31.1"
    (tmp_path / "t.json").write_text(json.dumps(trace))
    result = runner.invoke(app, ["validate", "schedule", str(GOLDEN / "prefix_same_step.yaml"), "--against",
                                 str(tmp_path / "t.json")])
    assert "recorded with vLLM 0.31.1" in result.output and "models vLLM 0.32.0" in result.output
    assert result.exit_code == 0


def test_a_trace_of_an_edited_scenario_warns(tmp_path):
    text = (GOLDEN / "prefix_same_step.yaml").read_text().replace("seed: 17", "seed: 18")
    path = write(tmp_path, text, "prefix_same_step.yaml")
    result = runner.invoke(app, ["validate", "schedule", str(path), "--against", str(GOLDEN / "prefix_same_step.json")])
    assert "different version of this scenario" in result.output


def test_not_a_trace(tmp_path):
    (tmp_path / "t.json").write_text('{"steps": []}')
    result = runner.invoke(app, ["validate", "schedule", str(GOLDEN / "prefix_same_step.yaml"), "--against",
                                 str(tmp_path / "t.json")])
    assert result.exit_code == 2 and "not a servesim vLLM trace" in result.output


def test_same_seed_same_tokens():
    a = load_scenario(GOLDEN / "mixed_long_run.yaml")
    b = load_scenario(GOLDEN / "mixed_long_run.yaml")
    assert a.token_ids == b.token_ids and a.digest() == b.digest()
