"""The memory planner follows vLLM's arithmetic: budget, weights per stage, block bytes, minimum over workers."""

import math

import pytest

from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.models.catalog import get_model
from servesim.perf.capacity import fit_rows
from servesim.perf.memory import (CUDA_GRAPH_BYTES, NCCL_BYTES, NON_TORCH_BYTES, activation_peak_bytes,
                                  plan_memory, stage_weight_bytes)

GiB = 1024**3


def test_llama_8b_on_h100_matches_vllms_logged_split():
    """vLLM logs on H100 80GB: total_gpu_memory 79.11 GiB x 0.90 = 71.20 GiB; model weights 14.99 GiB;
    PyTorch activation peak 1.24 GiB (max_num_batched_tokens 8192)."""
    model, device = get_model("llama-3.1-8b"), get_device("h100")
    plan = plan_memory(model, device, max_num_batched_tokens=8192, max_num_seqs=256)
    assert plan.budget_bytes / GiB == pytest.approx(71.20, abs=0.01)
    assert plan.weight_bytes / GiB == pytest.approx(14.99, rel=0.005)
    assert plan.activation_bytes / GiB == pytest.approx(1.24, rel=0.02)


def test_blocks_are_vllms_integer_division_of_what_is_left():
    model, device = get_model("llama-3.1-8b"), get_device("a100")
    plan = plan_memory(model, device, block_size=16, gpu_memory_utilization=0.85, max_num_batched_tokens=2048,
                       max_num_seqs=256)
    budget = math.ceil(device.total_visible_bytes * 0.85)
    kv = (budget - model.num_params * 2 - activation_peak_bytes(model, 1, 2048, 256)
          - NON_TORCH_BYTES - NCCL_BYTES[1] - CUDA_GRAPH_BYTES)
    per_block = 16 * 32 * 2 * 8 * 128 * 2  # block tokens x layers x (K, V) x kv heads x head dim x bf16
    assert plan.kv_bytes == pytest.approx(kv, rel=1e-12)
    assert plan.num_blocks == int(kv // per_block)
    assert plan.max_tokens == (plan.num_blocks - 1) * 16  # vLLM's null block


def test_fp8_kv_doubles_blocks_and_fp8_weights_keep_embeddings_in_bf16():
    model, device = get_model("llama-3.1-8b"), get_device("h100")
    bf16 = plan_memory(model, device)
    fp8kv = plan_memory(model, device, kv_dtype="fp8")
    assert fp8kv.num_blocks in (2 * bf16.num_blocks, 2 * bf16.num_blocks + 1)
    fp8 = model.with_dtype("fp8")
    embed = model.vocab_size * model.hidden_size
    expected = (model.num_params - 2 * embed) * 1 + 2 * embed * 2  # norms are tiny; embeddings, LM head bf16
    assert stage_weight_bytes(fp8, 1, 1, 0, 32) == pytest.approx(expected, rel=1e-3)


def test_tp_shards_weights_and_kv_heads_and_pp_takes_the_tightest_stage():
    model, device = get_model("llama-3.1-70b"), get_device("h100")
    tp4 = plan_memory(model, device, tp=4)
    tp8 = plan_memory(model, device, tp=8)
    assert tp8.weight_bytes < tp4.weight_bytes / 1.9
    assert tp8.kv_bytes_per_token == tp4.kv_bytes_per_token / 2
    pp = plan_memory(model, device, tp=4, pp=2)
    # 40 layers per stage; the last stage also holds the LM head, the first the embedding: same size here,
    # and the blocks are the minimum over stages.
    per_stage = [stage_weight_bytes(model, 4, 2, s, 40) for s in range(2)]
    assert pp.weight_bytes == max(per_stage)
    assert pp.kv_bytes_per_token == tp4.kv_bytes_per_token / 2


def test_memory_errors_give_the_numbers():
    with pytest.raises(ServesimError, match=r"needs 141\.\d GB of weights per GPU at TP=1.*h100 has"):
        plan_memory(get_model("llama-3.1-70b"), get_device("h100"))
    with pytest.raises(ServesimError, match=r"--pp 81 must be between 1 and llama-3.1-70b's 80 layers"):
        plan_memory(get_model("llama-3.1-70b"), get_device("h100"), tp=8, pp=81)
    with pytest.raises(ServesimError, match="no memory left for the KV cache"):
        plan_memory(get_model("llama-3.1-8b"), get_device("l40s"), gpu_memory_utilization=0.355)


def test_fit_rows_cover_every_tp_and_say_why_one_does_not_fit():
    rows = fit_rows(get_model("llama-3.1-70b"), get_device("h100"), max_model_len=8192)
    assert [r["tp"] for r in rows] == [1, 2, 4, 8]
    assert not rows[0]["fits"] and "weights per GPU" in rows[0]["reason"]
    assert all(r["fits"] for r in rows[1:])
    assert rows[1]["max_tokens"] < rows[2]["max_tokens"] < rows[3]["max_tokens"]
    qwen = fit_rows(get_model("qwen2.5-7b"), get_device("h100"))
    assert not qwen[3]["fits"] and "does not divide" in qwen[3]["reason"]
