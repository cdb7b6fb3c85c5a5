"""Size rules an engine's own source code fixes, not fitted: which kernel configuration or library a call of a
given size goes to. Each rule names the file it is read from; the forms (forms.py) take the rule as an argument.
"""

from __future__ import annotations

import math

import numpy as np

# An all-reduce's path, as forms.allreduce_time takes it: the faster custom algorithm, one-shot, two-shot, or NCCL
AR_BEST, AR_ONE_SHOT, AR_TWO_SHOT, AR_NCCL = 0.0, 1.0, 2.0, 3.0

# GEMM CTA tiles and thread-block clusters by rows m: ((largest m, tile m, tile n, tile k, cluster m, cluster n),
# ...), the first row with m <= its largest m applies. sgl-kernel's fp8_scaled_mm on SM90 (sgl-kernel
# csrc/gemm/fp8_gemm_kernel.cu, sm90_fp8_dispatch_shape): 64x64x128 tiles up to 256 rows (clusters 1x8 at one row,
# 1x4 up to 64, 1x1 above), 128x128x128 above (clusters 1x1 up to 1024 rows, 2x1 above). CUTLASS launches whole
# clusters: the tile grid rounds up to the cluster shape, and the padding tiles run the main loop too.
SGL_KERNEL_FP8_SM90 = ((1.0, 64.0, 64.0, 128.0, 1.0, 8.0), (64.0, 64.0, 64.0, 128.0, 1.0, 4.0),
                       (256.0, 64.0, 64.0, 128.0, 1.0, 1.0), (1024.0, 128.0, 128.0, 128.0, 1.0, 1.0),
                       (math.inf, 128.0, 128.0, 128.0, 2.0, 1.0))

# All-reduce messages from this many bytes on leave the engine's custom kernel for NCCL: vLLM's
# CustomAllreduce takes inputs below max_size = 8 MiB (distributed/device_communicators/custom_all_reduce.py,
# should_custom_ar: inp_size < max_size); SGLang's takes inputs up to and including 8 MiB (same file name,
# inp_size <= max_size). TensorRT-LLM switches on tokens as well (trtllm_allreduce_path).
ALLREDUCE_NCCL_FROM_BYTES = {"vllm": 8.0 * 2**20, "sglang": 8.0 * 2**20 + 1.0}

# TensorRT-LLM's AUTO all-reduce strategy (cpp/tensorrt_llm/thop/allreduceOp.cpp, AllreduceOp::selectImplementation
# and ifFallbackToNCCL; the 1.0 series): NCCL when the message exceeds the custom kernels' workspace
# (common/customAllReduceUtils.h getMaxRequiredWorkspaceSize: 16e6 bytes for 2 GPUs, 8e6 above); else 2 GPUs run
# MIN_LATENCY, and more GPUs run NCCL above 128 tokens (threshold = 128: "NCCL is faster than MIN_LATENCY when the
# token number is greater than 256. I conservatively set the threshold here to 128 tokens") and MIN_LATENCY at or
# below. MIN_LATENCY is the one-shot kernel up to kOneShotMaxToken = 128 tokens
# (kernels/communicationKernels/allReduceFusionKernels.h), the two-shot kernel above.
TRTLLM_ALLREDUCE_MAX_ONE_SHOT_TOKENS = 128.0
TRTLLM_ALLREDUCE_NCCL_ABOVE_TOKENS = 128.0


def trtllm_allreduce_path(tokens, message_bytes, gpus):
    """forms.AR_* of TensorRT-LLM's AUTO strategy for messages of `tokens` rows (floats or arrays)."""
    workspace = np.where(gpus <= 2, 16e6, 8e6)
    nccl = (message_bytes > workspace) | ((gpus > 2) & (tokens > TRTLLM_ALLREDUCE_NCCL_ABOVE_TOKENS))
    one_shot = tokens <= TRTLLM_ALLREDUCE_MAX_ONE_SHOT_TOKENS
    return np.where(nccl, AR_NCCL, np.where(one_shot, AR_ONE_SHOT, AR_TWO_SHOT))


def allreduce_path(engine: str, tokens, message_bytes, gpus):
    """forms.AR_* for `engine`'s all-reduce of `tokens` rows and `message_bytes` over `gpus` GPUs. tokens 0 (not
    known): a custom kernel by size, as the engine's cap allows."""
    by_size = np.where(np.asarray(message_bytes) >= ALLREDUCE_NCCL_FROM_BYTES.get(engine, math.inf), AR_NCCL, AR_BEST)
    if engine != "trtllm":
        return by_size
    return np.where(np.asarray(tokens) > 0, trtllm_allreduce_path(tokens, message_bytes, gpus), by_size)


# TensorRT-LLM's decode attention kernel by head layout (cpp/tensorrt_llm/kernels/decoderMaskedMultiheadAttention/
# decoderXQAImplJIT/kernelUtils.cpp): XQA takes grouped-query heads (supportConfigCommon: "Do not use XQA kernel for
# vanilla MHA", num_q_heads == num_kv_heads at beam width 1) of at most 32 query heads per KV head (supportConfigHMMA /
# supportConfigQGMMA: head_grp_size * beam_width > 32 -> false) and head sizes 16..256 in steps of 16; everything else
# falls back to the masked multi-head kernel (MMHA), one thread block per query head. On SM90 with an FP8 cache XQA is
# the Hopper GMMA kernel (decoderXQAImplJIT.cpp: isGmmaKernel == (SM 90 && E4M3 KV && beam 1)); otherwise the
# Ampere-style HMMA kernel.
TRTLLM_XQA_MAX_GROUP = 32


def trtllm_decode_kernel(heads: float, kv_heads: float, head_dim: float, kv_bytes: float, hopper: bool) -> str:
    """The TensorRT-LLM decode attention kernel for one head layout: "xqa", "xqa_gmma" or "mmha"."""
    group = heads / kv_heads
    xqa = 1 < group <= TRTLLM_XQA_MAX_GROUP and head_dim % 16 == 0 and 16 <= head_dim <= 256
    if not xqa:
        return "mmha"
    return "xqa_gmma" if hopper and kv_bytes == 1.0 else "xqa"


HOPPER = ("h100", "h200")  # SM90 GPUs of the catalog

# Rotary embedding in XQA: only the Hopper GMMA kernel applies RoPE itself, and only where the rotary dimension is
# a multiple of 16 no larger than the head (decoderXQAImplJIT/kernelUtils.cpp, appliesRoPEInXqaKernel: "Unsupported
# shapes fall back to invokeQKVPreprocessing"). Otherwise a separate preprocessing kernel rotates q and k and writes
# the new token's K/V first, a launch of its own. HMMA XQA and masked MHA always take their RoPE that way, so their
# fitted floors include it.


def trtllm_rope_pass(kernel: str, head_dim, rotary_dim: float):
    """1 where the GMMA kernel's RoPE runs as a separate preprocessing pass (rotary dim unsupported), else 0."""
    fused = (rotary_dim <= head_dim) & (rotary_dim % 16 == 0)
    return np.where(fused, 0.0, 1.0) if kernel == "xqa_gmma" else np.zeros_like(np.asarray(head_dim, float))

# XQA's multi-block (split-KV) mode, on by default, cuts each (sequence, KV head) into `blocks` sub-sequences, one
# thread block each, merged at the end (decoderMaskedMultiheadAttention/decoderXQAImplCommon.h,
# computeMultiBlockCount, with kMinHistoryTokensPerBlock = 128, kTargetWaveFactor = 8 and
# getXqaMaxNumSubSeq = 6000 from xqaParams.h / decoderXQAConstants.h): history / 128 blocks, at most
# round(sqrt(8 x that)) ("otherwise the final reduction may dominate"), then cut so that the thread blocks make at
# most 8 waves of SMs, then to the 6000 sub-sequences of the workspace; at least 1. `history` is the longest KV
# length in the call (max_past_kv_length). The GMMA and HMMA launches both take it (decoderXQAImplJIT.cpp).
XQA_MIN_HISTORY_PER_BLOCK = 128.0
XQA_TARGET_WAVES = 8.0
XQA_MAX_SUB_SEQS = 6000.0
MULTI_BLOCK_KERNELS = ("xqa", "xqa_gmma")


def xqa_blocks(history, seqs, kv_heads, sms):
    """XQA's sub-sequences per (sequence, KV head), computeMultiBlockCount's integer steps, for plain floats or
    numpy arrays: both paths use the same correctly rounded operations, so they agree bit for bit."""
    if isinstance(history, float):
        n = float(math.floor(history / XQA_MIN_HISTORY_PER_BLOCK))
        n = max(min(n, float(math.floor(math.sqrt(8.0 * n) + 0.5))), 1.0)  # C++ std::round: half away from zero
        waves = seqs * kv_heads * n / sms / XQA_TARGET_WAVES
        if waves > 1.0:
            n = max(float(math.floor(n / waves)), 1.0)
        return max(min(n, float(math.floor(XQA_MAX_SUB_SEQS / seqs))), 1.0)
    n = np.floor(history / XQA_MIN_HISTORY_PER_BLOCK)
    n = np.maximum(np.minimum(n, np.floor(np.sqrt(8.0 * n) + 0.5)), 1.0)
    waves = seqs * kv_heads * n / sms / XQA_TARGET_WAVES
    n = np.where(waves > 1.0, np.maximum(np.floor(n / waves), 1.0), n)
    return np.maximum(np.minimum(n, np.floor(XQA_MAX_SUB_SEQS / seqs)), 1.0)


def decode_kernel(engine: str, heads: float, kv_heads: float, head_dim: float, kv_bytes: float, hopper: bool) -> str:
    """`engine`'s decode attention kernel for a head layout where it has several ("" : one surface)."""
    return trtllm_decode_kernel(heads, kv_heads, head_dim, kv_bytes, hopper) if engine == "trtllm" else ""


def gemm_tiles(engine: str, dtype: str) -> tuple | None:
    """The tile rule of `engine`'s GEMMs of `dtype`, or None: the generic 128 x 128 form."""
    return SGL_KERNEL_FP8_SM90 if (engine, dtype) == ("sglang", "fp8") else None
