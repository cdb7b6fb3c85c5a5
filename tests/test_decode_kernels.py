"""TensorRT-LLM's decode attention: the kernel its source picks per head layout (dispatch.py), each with its own
fitted coefficients; the K-only-cache artefact of aiconfigurator's older TensorRT-LLM tables, fitted with and
priced without; the wave and overlap terms of the per-sequence cost; XQA's multi-block (split-KV) rule."""

from dataclasses import replace

import numpy as np

from servesim.hardware.catalog import get_device
from servesim.models.catalog import get_model
from servesim.perf.calibrated import CalibratedModel
from servesim.perf.kernels import dispatch, forms
from servesim.perf.kernels.calibrate import hardware
from servesim.perf.kernels.calibration import load_calibration
from servesim.perf.kernels.samples import _trtllm_kv_aliased, read_aiconfigurator

from conftest import shared_data

A100 = get_device("a100")


def test_trtllm_decode_kernel_follows_xqa_support_rules():
    k = dispatch.trtllm_decode_kernel
    assert k(32, 32, 128, 2.0, False) == "mmha"  # plain multi-head attention never takes XQA at beam width 1
    assert k(32, 8, 128, 2.0, False) == "xqa"
    assert k(64, 2, 128, 2.0, False) == "xqa"  # a group of exactly 32
    assert k(64, 1, 128, 2.0, False) == "mmha"  # a group of 64: the masked MHA fallback
    assert k(32, 8, 512, 2.0, False) == "mmha"  # XQA's HMMA kernel stops at head size 256
    assert k(32, 8, 128, 1.0, True) == "xqa_gmma"  # SM90 with an FP8 cache: the GMMA kernel
    assert k(32, 8, 128, 1.0, False) == "xqa" and k(32, 8, 128, 2.0, True) == "xqa"
    assert dispatch.decode_kernel("vllm", 32, 8, 128, 1.0, True) == ""


def test_kv_aliasing_marks_tables_collected_before_the_distinct_kv_collector():
    assert _trtllm_kv_aliased("1.0.0") and _trtllm_kv_aliased("1.3.0rc10")
    assert not _trtllm_kv_aliased("1.3.0rc20") and not _trtllm_kv_aliased("1.3.0")


def _coeffs(**kw):
    c = list(forms.DECODE_ATTN.initial)
    for name, value in kw.items():
        c[forms.DECODE_ATTN.params.index(name)] = value
    return c


def test_aliased_v_reads_are_cheaper_by_tile_and_fade_past_l2_for_mha_streams():
    hw = hardware(A100, "generation_attention")
    c = _coeffs(alias_hit=1.0, alias_reach=1.0, par_half=1e-3, kv_tile=16.0)
    seqs, ctx = 64.0, np.array([64.0, 65536.0])
    args = (c, hw, seqs, seqs * ctx, 32.0, 8.0, 128.0, 2.0)
    plain = forms.decode_attention_time(*args)
    tiled = forms.decode_attention_time(*args, kv_alias=1.0, alias_by_tile=1.0)
    streamed = forms.decode_attention_time(*args, kv_alias=1.0, alias_by_tile=0.0)
    assert np.all(tiled < plain)
    # long context: V tiles still hit when read right after K; a whole K stream no longer fits in L2
    assert tiled[1] / plain[1] < 0.6 and streamed[1] / plain[1] > 0.99
    assert streamed[0] < plain[0]
    # servesim's clock never sets the artefact: the coefficients it prices with equal the unaliased fit's
    assert forms.decode_attention_coeffs(c, hw, seqs, 32.0, 8.0, 128.0, 2.0)[1] == \
        forms.decode_attention_coeffs(c, hw, seqs, 32.0, 8.0, 128.0, 2.0, 0.0)[1]


def test_first_wave_of_sequences_costs_the_floor_and_overlap_moves_cost_into_the_tile():
    hw = hardware(A100, "generation_attention")
    c = _coeffs(free_wave=1.0, kv_head_exp=1.0, head_weight=1e-5, overlap=1e-4)
    fixed = [forms.decode_attention_coeffs(c, hw, s, 32.0, 8.0, 128.0)[0] for s in (1.0, 2.0, 1024.0, 2048.0)]
    # 8 and 16 units on 108 SMs: almost nothing beyond the floor; thousands: linear in sequences
    assert fixed[1] - fixed[0] < 1e-3 * (fixed[3] - fixed[2])
    assert abs((fixed[3] - fixed[0]) / (fixed[2] - fixed[0]) - 2.0) < 0.01
    half = _coeffs(free_wave=1.0, kv_head_exp=1.0, head_weight=1e-5, overlap=0.5)
    f0, p0, _, _, t0 = forms.decode_attention_coeffs(c, hw, 1024.0, 32.0, 8.0, 128.0)
    f1, p1, _, _, t1 = forms.decode_attention_coeffs(half, hw, 1024.0, 32.0, 8.0, 128.0)
    assert f1 < f0 and t1 > t0 and p1 == p0


def test_calibrated_trtllm_prices_decode_with_the_kernel_of_the_model_layout():
    cal = load_calibration(A100, "trtllm")
    assert {"generation_attention.xqa", "generation_attention.mmha"} <= set(cal.coeffs)
    gqa = CalibratedModel(get_model("llama-3.1-8b"), A100, engine="trtllm")
    assert gqa._decode == cal.get("generation_attention.xqa")
    mha = CalibratedModel(get_model("llama-2-7b"), A100, engine="trtllm")
    assert mha._decode == cal.get("generation_attention.mmha")
    assert gqa._multi_block and not mha._multi_block
    assert CalibratedModel(get_model("llama-3.1-8b"), A100, engine="vllm")._decode == \
        load_calibration(A100, "vllm").get("generation_attention")


def test_a_users_decode_measurements_replace_the_bundled_kernel_variants(tmp_path):
    import json

    from servesim.perf.kernels.calibration import FORMAT

    user = tmp_path / "cal.json"
    c = list(forms.DECODE_ATTN.initial)
    user.write_text(json.dumps({"format": FORMAT, "measured": {"a100": {"trtllm": {"coeffs": {
        "generation_attention": c}}}}}))
    cal = load_calibration(A100, "trtllm", str(user))
    assert cal.get("generation_attention") == c
    assert not [k for k in cal.coeffs if k.startswith("generation_attention.")]
    model = CalibratedModel(get_model("llama-3.1-8b"), A100, engine="trtllm", calibration=cal)
    assert model._decode == c
    assert not model._multi_block  # the user's surface was fitted without XQA's split rule


def test_reader_splits_trtllm_decode_tables_by_kernel():
    folder = shared_data("profiles", "aiconfigurator", "data", "a100_sxm")
    parts = {s.key: s for s in read_aiconfigurator(folder, "trtllm") if s.family == "generation_attention"}
    assert set(parts) == {"generation_attention.xqa", "generation_attention.mmha"}
    xqa, mmha = parts["generation_attention.xqa"].columns, parts["generation_attention.mmha"].columns
    group = xqa["heads"] / xqa["kv_heads"]
    assert np.all((group > 1) & (group <= 32)) and np.all(xqa["kv_alias"] == 1.0)
    assert np.all(mmha["alias_by_tile"] == 0.0) and np.all(xqa["alias_by_tile"] == 1.0)


def test_xqa_multi_block_count_follows_compute_multi_block_count():
    # history // 128, capped at round(sqrt(8 n)), cut to 8 waves of SMs, then to 6000 sub-sequences; at least 1
    cases = [((100.0, 1.0, 8.0, 108.0), 1.0), ((1024.0, 1.0, 8.0, 108.0), 8.0),
             ((4096.0, 1.0, 8.0, 108.0), 16.0),  # 32 blocks, capped at round(sqrt(256)) = 16
             ((131072.0, 1.0, 1.0, 132.0), 91.0),  # 1024 blocks, round(sqrt(8192)) = round(90.5...) = 91
             ((1024.0, 32.0, 8.0, 108.0), 3.0),  # 8 blocks make 2.37 x 8 waves: floor(8 / 2.37)
             ((1024.0, 64.0, 8.0, 108.0), 1.0), ((65536.0, 4.0, 1.0, 132.0), 64.0),
             ((65536.0, 200.0, 1.0, 1000.0), 30.0)]  # 64 blocks, 6000 // 200 = 30 sub-sequences of workspace
    for args, blocks in cases:
        assert dispatch.xqa_blocks(*args) == blocks, args
    history = np.array([a[0] for a, _ in cases[:4]])
    assert np.array_equal(dispatch.xqa_blocks(history, 1.0, 8.0, 108.0),
                          [dispatch.xqa_blocks(float(h), 1.0, 8.0, 108.0) for h in history])


def test_xqa_prices_its_rules_split_and_a_merge_per_extra_sub_sequence():
    hw = hardware(A100, "generation_attention.xqa")
    c = list(load_calibration(A100, "trtllm").get("generation_attention.xqa"))
    fixed, per_token, starve, split, tile = forms.decode_attention_coeffs(c, hw, 1.0, 32.0, 8.0, 128.0)
    blocks = forms.decode_multi_block(c, hw, 1.0, 8.0, per_token)
    merge = blocks[3]
    assert merge == c[forms.DECODE_ATTN.params.index("merge_cost")] * 8.0 / per_token
    for kv in (127.0, 1024.0, 8192.0, 65536.0):
        n = dispatch.xqa_blocks(kv, 1.0, 8.0, float(hw.sms))
        k = forms.decode_kv(kv, 0.0, split, tile)
        assert forms.decode_kv(kv, starve, split, tile, blocks) == k + starve * k / n + merge * (n - 1.0)
    # one sequence at 65,536 tokens: 64 sub-sequences per KV head beat one (an SM count of 1 forces one block)
    assert forms.decode_kv(65536.0, starve, split, tile, blocks) < \
        0.5 * forms.decode_kv(65536.0, starve, split, tile, (1.0, 8.0, 1.0, merge))
    assert forms.decode_attention_time(c, hw, 1.0, 8192.0, 32.0, 8.0, 128.0, multi_block=True) == \
        fixed + per_token * forms.decode_kv(8192.0, starve, split, tile, blocks)


def test_gmma_rope_runs_separately_only_where_the_rotary_dimension_does_not_fit_the_head():
    heads = np.array([64.0, 128.0, 256.0])
    assert list(dispatch.trtllm_rope_pass("xqa_gmma", heads, 128.0)) == [1.0, 0.0, 0.0]
    assert list(dispatch.trtllm_rope_pass("xqa_gmma", heads, 64.0)) == [0.0, 0.0, 0.0]
    assert list(dispatch.trtllm_rope_pass("xqa_gmma", heads, 120.0)) == [1.0, 1.0, 1.0]  # not a multiple of 16
    # HMMA XQA and masked MHA always rotate in their preprocessing kernel: their floors include it, no flag
    assert not dispatch.trtllm_rope_pass("xqa", heads, 128.0).any()
    assert not dispatch.trtllm_rope_pass("mmha", heads, 128.0).any()


def test_the_separate_rope_pass_is_priced_in_the_fit_and_never_in_the_clock():
    hw = hardware(get_device("h100"), "generation_attention.xqa_gmma")
    c = _coeffs(rope_pass=3e-6)
    args = (hw, 8.0, 8.0 * 1024.0, 32.0, 8.0, 64.0, 1.0)
    plain = forms.decode_attention_time(c, *args, multi_block=True)
    flagged = forms.decode_attention_time(c, *args, multi_block=True, rope_pass=1.0)
    assert abs(flagged - plain - 3e-6) < 1e-12
    other = _coeffs(rope_pass=4e-5)
    assert forms.decode_attention_coeffs(c, hw, 8.0, 32.0, 8.0, 64.0, 1.0) == \
        forms.decode_attention_coeffs(other, hw, 8.0, 32.0, 8.0, 64.0, 1.0)
    h100 = get_device("h100")
    cal = load_calibration(h100, "trtllm")
    gmma = list(cal.get("generation_attention.xqa_gmma"))
    moved = replace(cal, coeffs={**cal.coeffs, "generation_attention.xqa_gmma": gmma[:21] + [gmma[21] * 10.0]})
    spans = [CalibratedModel(get_model("llama-3.1-8b"), h100, engine="trtllm", kv_dtype="fp8", calibration=c)
             .decode_span(8, 8 * 1024, 4) for c in (cal, moved)]
    assert np.array_equal(spans[0], spans[1])


def test_reader_flags_h100_gmma_rows_whose_head_is_narrower_than_the_collectors_rotary_dimension():
    folder = shared_data("profiles", "aiconfigurator", "data", "h100_sxm")
    parts = {s.key: s.columns for s in read_aiconfigurator(folder, "trtllm") if s.family == "generation_attention"}
    gmma = parts["generation_attention.xqa_gmma"]
    assert np.array_equal(gmma["rope_pass"], (gmma["head_dim"] < 128).astype(float)) and gmma["rope_pass"].any()
    assert not parts["generation_attention.xqa"]["rope_pass"].any()
