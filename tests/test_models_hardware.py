import json

import pytest

from servesim.errors import ServesimError
from servesim.hardware import get_device, load_device
from servesim.models import get_model, load_model_config
from servesim.perf.memory import plan_memory

# Parameter counts as published for each model (billions).
PUBLISHED = {"llama-3.1-8b": 8.03, "llama-3.1-70b": 70.55, "qwen3-8b": 8.19, "qwen3-32b": 32.76, "mistral-7b": 7.25,
             "llama-3.2-1b": 1.24, "qwen2.5-7b": 7.62}


@pytest.mark.parametrize("name,billions", PUBLISHED.items())
def test_parameter_counts_match_published(name, billions):
    assert get_model(name).num_params / 1e9 == pytest.approx(billions, abs=0.01)


def test_models_by_hf_id_and_gqa_kv_size():
    m = get_model("meta-llama/Llama-3.1-8B-Instruct")
    assert m.name == "llama-3.1-8b"
    assert m.kv_bytes_per_token() == 2 * 32 * 8 * 128 * 2  # K+V, 32 layers, 8 kv heads of 128, bf16
    assert m.with_dtype("fp8").weight_bytes == pytest.approx(m.num_params)


def test_unknown_model_lists_choices():
    with pytest.raises(ServesimError, match="valid choices: .*llama-3.1-8b"):
        get_model("llama-9")


def test_model_config_file(tmp_path):
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
           "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
           "vocab_size": 151936, "max_position_embeddings": 40960, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = load_model_config(tmp_path / "config.json")
    assert m.num_params / 1e9 == pytest.approx(0.596, abs=0.01)  # Qwen3-0.6B
    bad = dict(cfg, num_attention_heads=15)
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ServesimError, match="not a multiple"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text("{ broken")
    with pytest.raises(ServesimError, match=r"config.json:1"):
        load_model_config(tmp_path)


def test_unknown_gpu_and_device_file(tmp_path):
    with pytest.raises(ServesimError, match="valid choices: h100"):
        get_device("h1000")
    f = tmp_path / "cpu.yaml"
    f.write_text("name: my-cpu\nbf16_flops: 1.0e12\nmem_bandwidth: 5.0e10\nmem_bytes: 1.0e10\n")
    assert load_device(f).name == "my-cpu"
    f.write_text("name: my-cpu\nbf16_flops: 1.0e12\nmem_bandwidth: 5.0e10\nmem_bytes: 1.0e10\nspeed: 3\n")
    with pytest.raises(ServesimError, match="unknown field 'speed'"):
        load_device(f)


def test_memory_plan_and_does_not_fit():
    plan = plan_memory(get_model("llama-3.1-8b"), get_device("h100"))
    # 80 GiB * 0.9 - 16.1 GB weights - activations and reserves
    assert 55e9 < plan.kv_bytes < 62e9
    assert plan.num_blocks == int(plan.kv_bytes // (plan.kv_bytes_per_token * 16))
    with pytest.raises(ServesimError, match=r"needs 141\.1 GB of weights per GPU at TP=1"):
        plan_memory(get_model("llama-3.1-70b"), get_device("h100"))
    assert plan_memory(get_model("llama-3.1-70b"), get_device("h100"), tp=4).num_blocks > 0
