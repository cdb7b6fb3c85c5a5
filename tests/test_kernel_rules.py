"""The kernel forms' size rules: engine dispatch read from source (GEMM tiles, the all-reduce NCCL cap), the
elementwise wave tail and L2 cliff, and decode attention's split cutoff. Each asserts a behaviour the form must
show, on coefficients built for the check or shipped in kernels.json."""

import math

import numpy as np
import pytest

from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.perf.calibrated import CalibratedModel
from servesim.models.catalog import get_model
from servesim.perf.kernels import dispatch, forms
from servesim.perf.kernels.calibrate import hardware
from servesim.perf.kernels.calibration import load_calibration
from servesim.perf.kernels.samples import read_csv_dir

H100 = get_device("h100")
MIB = 2.0**20


def test_engine_rules_come_from_the_engines_source():
    assert dispatch.gemm_tiles("sglang", "fp8") == dispatch.SGL_KERNEL_FP8_SM90
    assert dispatch.gemm_tiles("sglang", "bf16") is None and dispatch.gemm_tiles("vllm", "fp8") is None
    # vLLM: custom all-reduce below 8 MiB; SGLang: up to and including 8 MiB; with tokens unknown TensorRT-LLM has
    # no byte cap modelled.
    sizes = np.array([8 * MIB - 1, 8 * MIB, 8 * MIB + 1])
    assert list(dispatch.allreduce_path("vllm", 0.0, sizes, 2.0)) == [forms.AR_BEST, forms.AR_NCCL, forms.AR_NCCL]
    assert list(dispatch.allreduce_path("sglang", 0.0, sizes, 2.0)) == [forms.AR_BEST, forms.AR_BEST, forms.AR_NCCL]
    assert list(dispatch.allreduce_path("trtllm", 0.0, sizes * 64, 8.0)) == [forms.AR_BEST] * 3


def test_trtllm_auto_all_reduce_switches_on_tokens_and_workspace():
    hidden_bytes = 4096 * 2.0
    tokens = np.array([1.0, 128.0, 129.0, 1024.0, 2048.0])
    msg = tokens * hidden_bytes
    # more than 2 GPUs: one-shot up to 128 tokens, NCCL above
    eight = dispatch.allreduce_path("trtllm", tokens, msg, 8.0)
    assert list(eight) == [forms.AR_ONE_SHOT, forms.AR_ONE_SHOT] + [forms.AR_NCCL] * 3
    # 2 GPUs: one-shot, then two-shot, NCCL only past the 16e6-byte workspace (2048 x 8 KiB = 16.8e6 bytes)
    two = dispatch.allreduce_path("trtllm", tokens, msg, 2.0)
    assert list(two) == [forms.AR_ONE_SHOT, forms.AR_ONE_SHOT, forms.AR_TWO_SHOT, forms.AR_TWO_SHOT, forms.AR_NCCL]


def test_nccl_path_is_its_protocols_smooth_minimum():
    device = get_device("a100")
    c = load_calibration(device, "trtllm").get("allreduce")
    hw = hardware(device, "allreduce")
    names = forms.ALLREDUCE.params
    p = dict(zip(names, c))
    g = 8.0
    for b in (4096.0, 4 * MIB, 256 * MIB):
        ring = 2 * (g - 1) / g * b / hw.link_bandwidth
        ll = p["nccl_ll_latency"] + p["nccl_hop"] * (g - 1) + ring / p["nccl_ll_eff"]
        simple = (p["nccl_latency"] + p["nccl_hop"] * (g - 1) + ring / p["nccl_eff"]
                  + b / (hw.mem_bandwidth * p["nccl_mem_eff"]))
        t = float(forms.allreduce_time(c, hw, b, g, forms.AR_NCCL))
        assert min(ll, simple) * 2.0 ** (-1.0 / p["nccl_sharpness"]) <= t <= min(ll, simple)
    # a one-shot of one token of 8 KiB waits for one block to read its token from every peer
    one_token = float(forms.allreduce_time(c, hw, 8192.0, g, forms.AR_ONE_SHOT, 1.0))
    unknown = float(forms.allreduce_time(c, hw, 8192.0, g, forms.AR_ONE_SHOT, 0.0))
    assert one_token - unknown == pytest.approx((g - 1) * 8192.0 * hw.sms / (hw.link_bandwidth * p["block_eff"]))


def test_sgl_kernel_tiles_pad_rows_to_64_up_to_256_then_to_128_and_grids_to_clusters():
    hw = hardware(H100, "gemm.fp8")
    # compute-bound only: no floor, no wave or k loss, memory and quantisation negligible
    c = [0.0, 0.0, 0.5, 1e-9, 0.0, 1e9, 12.0, 0.0, 0.0, 0.25]
    n = k = 8192.0

    def t(m):
        return float(forms.gemm_time(c, hw, float(m), n, k, 1.0, dispatch.SGL_KERNEL_FP8_SM90))

    assert t(193) == pytest.approx(t(256), rel=1e-12)  # both pad to 4 tiles of 64 rows
    assert t(129) == pytest.approx(t(192), rel=1e-12)
    assert t(129) < t(193)
    # 257 rows: 3 tiles of 128 (384 rows) at full reuse, against 256 rows in 64 x 64 tiles costing 1 + 0.25 x 2
    assert t(257) / t(256) == pytest.approx(384 / (256 * 1.5), rel=1e-9)
    # whole clusters: above 1,024 rows tiles pair along m (2x1), so 1,025 rows (9 tiles) run 10 tiles of 128
    assert t(1025) / t(1024) == pytest.approx(10 / 8, rel=1e-9)
    # up to 64 rows clusters are 1x4 along n: 5 tiles of 64 columns run 8; one row runs 1x8 clusters
    assert float(forms.gemm_time(c, hw, 2.0, 320.0, k, 1.0, dispatch.SGL_KERNEL_FP8_SM90)) == pytest.approx(
        float(forms.gemm_time(c, hw, 2.0, 512.0, k, 1.0, dispatch.SGL_KERNEL_FP8_SM90)), rel=1e-12)
    assert float(forms.gemm_time(c, hw, 1.0, 576.0, k, 1.0, dispatch.SGL_KERNEL_FP8_SM90)) == pytest.approx(
        float(forms.gemm_time(c, hw, 1.0, 512.0, k, 1.0, dispatch.SGL_KERNEL_FP8_SM90)) * 2, rel=1e-9)
    # without the rule the generic form is unchanged: work is m n k
    generic = float(forms.gemm_time(c, hw, 256.0, n, k, 1.0))
    assert generic == pytest.approx(2 * 256 * n * k / (hw.peak_flops * 0.5), rel=1e-9)


def test_all_reduce_leaves_the_custom_kernel_for_nccl_at_the_engines_cap():
    device = get_device("a100")
    c = load_calibration(device, "vllm").get("allreduce")
    hw = hardware(device, "allreduce")
    below, at = 8 * MIB - 16.0, 8 * MIB
    custom = float(forms.allreduce_time(c, hw, at, 2.0))
    path = dispatch.allreduce_path("vllm", 0.0, np.array([below, at]), 2.0)
    nccl = float(forms.allreduce_time(c, hw, at, 2.0, path[1]))
    assert nccl == float(forms.allreduce_time(c, hw, at, 2.0, forms.AR_NCCL))
    assert nccl >= custom
    assert float(forms.allreduce_time(c, hw, below, 2.0, path[0])) == float(forms.allreduce_time(c, hw, below, 2.0))


def test_vllm_steps_price_the_nccl_switch_and_sglang_keeps_8_mib_custom():
    model, device = get_model("llama-3.1-8b"), get_device("a100")
    assert 1024 * model.hidden_size * 2 == 8 * MIB  # 1,024 tokens: an all-reduce of exactly 8 MiB
    m = np.array([1022.0, 1023.0, 1024.0, 1025.0])
    for engine, jump_at in (("vllm", 2), ("sglang", 3)):
        steps = np.diff(CalibratedModel(model, device, tp=2, engine=engine)._layer_dense(m))
        assert np.argmax(steps) == jump_at - 1, (engine, steps)
        assert steps.max() > 3 * np.median(steps)


def _elementwise_coeffs():
    # floor, memory_eff, l2_gain, l2_sharpness, wave_latency, row_eff
    return [2e-6, 0.8, 0.5, 4.0, 1e-6, 0.4]


def test_elementwise_waves_of_token_blocks_add_a_tail_per_wave():
    hw = hardware(H100, "elementwise")
    c = _elementwise_coeffs()
    row = 16384.0  # bytes per token
    per_wave = forms.BLOCKS_PER_SM * hw.sms
    one, two = per_wave, per_wave + 1
    t_one = float(forms.elementwise_time(c, hw, one * row, one))
    t_two = float(forms.elementwise_time(c, hw, two * row, two))
    tail = c[4] + row * hw.sms / (hw.mem_bandwidth * c[5])
    stream = row / (hw.mem_bandwidth * c[1])  # one more row, well below L2: about (1 - l2_gain) of it
    assert tail < t_two - t_one < tail + stream
    # rows = 0 (measurements without a token count): no wave term at all
    no_rows = float(forms.elementwise_time(c, hw, one * row, 0.0))
    assert t_one - no_rows == pytest.approx(tail, rel=1e-9)


def test_elementwise_l2_hits_fall_off_once_traffic_passes_l2():
    hw = hardware(H100, "elementwise")
    c = _elementwise_coeffs()[:4] + [1e-9, 1e3]

    def bandwidth(b):
        return b / (float(forms.elementwise_time(c, hw, b)) - c[0])

    small, large = hw.l2_bytes / 4, hw.l2_bytes * 4
    assert bandwidth(small) > 1.5 * bandwidth(large)
    assert bandwidth(large) == pytest.approx(hw.mem_bandwidth * c[1], rel=0.02)  # nearly nothing left in L2
    no_l2 = forms.Hardware(hw.peak_flops, hw.mem_bandwidth, hw.sms)
    assert float(forms.elementwise_time(c, no_l2, small)) == pytest.approx(c[0] + small / (hw.mem_bandwidth * c[1]))


def test_elementwise_csv_reads_an_optional_rows_column(tmp_path):
    (tmp_path / "elementwise.csv").write_text("op,bytes,latency_us,rows\nnorm,16384,4.1,1\nnorm,32768,4.2,\n")
    (s,) = read_csv_dir(tmp_path)
    assert list(s.columns["rows"]) == [1.0, 0.0]
    (tmp_path / "elementwise.csv").write_text("op,bytes,latency_us\nadd,24576,1.2\n")
    (s,) = read_csv_dir(tmp_path)
    assert list(s.columns["rows"]) == [0.0]
    (tmp_path / "elementwise.csv").write_text("op,bytes,latency_us,rows\nadd,24576,1.2,-3\n")
    with pytest.raises(ServesimError, match=r"elementwise.csv:2: rows must be positive"):
        read_csv_dir(tmp_path)


def test_decode_keeps_its_starvation_loss_when_pairs_fill_the_sms():
    hw = hardware(get_device("a100"), "generation_attention")
    c = list(load_calibration(get_device("a100"), "sglang").get("generation_attention"))
    split_below = c[forms.DECODE_ATTN.params.index("split_below")]
    context = 32768.0  # cached tokens per sequence

    def loss(seqs, kv_heads):
        _, _, starve, split, tile = forms.decode_attention_coeffs(c, hw, float(seqs), 32.0, kv_heads, 128.0)
        kv = seqs * context
        return float(forms.decode_kv(kv, starve, split, tile) / kv - 1.0), float(starve)

    assert 8 < 0.25 * split_below * hw.sms
    few, starve_few = loss(1, 8.0)  # 8 (sequence, KV head) pairs: the kernel splits each context
    many, starve_many = loss(math.ceil(4 * split_below * hw.sms / 8), 8.0)  # 4x the cutoff: it does not
    assert few < 0.05 * starve_few
    assert many > 0.5 * starve_many


def test_user_allreduce_csv_refits_custom_kernels_and_keeps_shipped_nccl(tmp_path):
    import json

    from servesim.perf.kernels.calibrate import calibrate_dir

    rows = ["num_gpus,message_bytes,latency_us"]
    for g in (2, 4, 8):
        for b in (2**e for e in range(10, 24, 2)):
            rows.append(f"{g},{b},{5.0 + 0.5 * g + b * (g - 1) / 1.2e5:.4f}")
    (tmp_path / "allreduce.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "mine.json"
    calibrate_dir(tmp_path, "a100", "trtllm", out)
    mine = json.loads(out.read_text())["measured"]["a100"]["trtllm"]["coeffs"]["allreduce"]
    shipped = load_calibration(get_device("a100"), "trtllm").get("allreduce")
    names = forms.ALLREDUCE.params
    for name in forms.ALLREDUCE_RULE_PARAMS:
        assert mine[names.index(name)] == shipped[names.index(name)], name
    assert mine[names.index("floor")] != shipped[names.index("floor")]  # the custom kernels are the user's
