"""How vLLM splits GPU memory into weights, activations, reserves and KV-cache blocks.

vLLM (v1 gpu_worker.determine_available_memory and kv_cache_utils.get_kv_cache_config_from_groups):

    requested  = ceil(total_memory * gpu_memory_utilization)       total as cudaMemGetInfo reports it
    available  = requested - non_kv_cache_memory - cudagraph_memory_estimate
    non_kv     = weights + non-torch memory (CUDA context growth, NCCL buffers) + activation peak
    bytes_per_block = block_size * sum over the worker's attention layers of 2 * kv_heads * head_dim * dtype bytes
    num_blocks = available // bytes_per_block,   the minimum over all workers (TP ranks, PP stages)

The weights, the block size and the division are exact; vLLM measures the activation peak, the non-torch
memory and the CUDA-graph pool by profiling, and servesim estimates them (below). One block is vLLM's null
block, so (num_blocks - 1) * block_size tokens can be cached.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import DTYPE_BYTES, ModelSpec
from servesim.perf.parallel import pp_layer_split

GiB = 1024**3
NON_TORCH_BYTES = 0.4 * GiB  # CUDA context growth and allocator slack ("non_torch_memory" in vLLM's log)
# NCCL buffers by TP size, from NVIDIA aiconfigurator's h100_sxm.yaml (misc.nccl_mem: 342 MB, 392 MB).
NCCL_BYTES = {1: 0, 2: 358612992, 4: 411041792, 8: 411041792}
CUDA_GRAPH_BYTES = 0.5 * GiB  # captured graphs' pools (vLLM profiles and subtracts it); 0 with enforce_eager
UNQUANTISED = 2.0  # fp8 checkpoints keep embeddings, LM head and norms in bf16


@dataclass(frozen=True)
class MemoryPlan:
    total_bytes: float  # per GPU, as the driver reports it
    budget_bytes: float  # ceil(total * gpu_memory_utilization)
    weight_bytes: float  # per GPU, the largest stage
    activation_bytes: float
    reserve_bytes: float  # non-torch + NCCL + CUDA graphs
    kv_bytes: float  # per GPU, the worker with the least
    kv_bytes_per_token: float  # per GPU
    block_size: int
    num_blocks: int
    tp: int = 1
    pp: int = 1

    @property
    def max_tokens(self) -> int:
        return max(0, (self.num_blocks - 1) * self.block_size)

    def as_dict(self) -> dict:
        return {**asdict(self), "max_tokens": self.max_tokens}


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads are split across TP ranks; with fewer heads than ranks each rank keeps a replica of one."""
    return max(1, model.num_kv_heads // tp)


def default_kv_dtype(model: ModelSpec) -> str:
    """vLLM's kv_cache_dtype "auto": the activation dtype, bf16 also under fp8 weights."""
    return "bf16" if model.dtype == "fp8" else model.dtype


def stage_weight_bytes(model: ModelSpec, tp: int, pp: int, stage: int, layers: int) -> float:
    """Weights one GPU of `stage` holds: its layers' linear weights sharded over TP, replicated norms, and the
    vocabulary-parallel embedding (first stage) and LM head (last stage; the embedding again when tied and
    the stages differ)."""
    h, w = model.hidden_size, model.bytes_per_param
    norm_bytes = UNQUANTISED if model.dtype == "fp8" else w
    per_layer = model.params_per_layer
    norms = 2 * h + (2 * model.head_dim if model.qk_norm else 0)
    bias = model.q_size + 2 * model.kv_size if model.attention_bias else 0
    linear = per_layer - norms - bias
    total = layers * (linear * w / tp + (norms + bias / tp) * norm_bytes)
    vocab = model.vocab_size * h / tp * norm_bytes
    if stage == 0:
        total += vocab
    if stage == pp - 1:
        total += h * norm_bytes
        if not model.tie_word_embeddings or pp > 1:
            total += vocab
    return total


def activation_peak_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int, max_num_seqs: int) -> float:
    """Estimate of vLLM's profiled activation peak: a forward pass of max_num_batched_tokens (the MLP's gate/up
    output and its activation, QKV, the residual stream) plus the dummy sampler run on fp32 logits of
    max_num_seqs rows (logits and probabilities, full vocabulary on the driver rank). Gives 1.24 GiB for
    Llama-3.1-8B at 8192 tokens and 256 sequences, as vLLM logs on H100."""
    inter, hidden = model.intermediate_size / tp, model.hidden_size
    qkv = (model.q_size + 2 * model.kv_size) / tp
    return max_num_batched_tokens * (3 * inter + qkv + 4 * hidden) * 2 + max_num_seqs * model.vocab_size * 4 * 2


def plan_memory(model: ModelSpec, device: Device, tp: int = 1, pp: int = 1, block_size: int = 16,
                gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int = 8192, max_num_seqs: int = 256,
                kv_dtype: str | None = None, enforce_eager: bool = False) -> MemoryPlan:
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ServesimError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if pp < 1 or pp > model.num_layers:
        raise ServesimError(f"--pp {pp} must be between 1 and {model.name}'s {model.num_layers} layers")
    total = device.total_visible_bytes
    budget = math.ceil(total * gpu_memory_utilization)
    activation = activation_peak_bytes(model, tp, max_num_batched_tokens, max_num_seqs)
    reserve = NON_TORCH_BYTES + NCCL_BYTES.get(tp, NCCL_BYTES[8]) + (0 if enforce_eager else CUDA_GRAPH_BYTES)
    kv_token_layer = 2 * kv_heads_per_gpu(model, tp) * model.head_dim * DTYPE_BYTES[kv_dtype or default_kv_dtype(model)]
    num_blocks, worst_weights, worst_kv, per_token = None, 0.0, 0.0, 0.0
    for stage, layers in enumerate(pp_layer_split(model.num_layers, pp)):
        weights = stage_weight_bytes(model, tp, pp, stage, layers)
        if weights > budget:
            raise ServesimError(
                f"{model.name} needs {weights / 1e9:.1f} GB of weights per GPU at TP={tp} PP={pp} ({model.dtype}); "
                f"{device.name} has {total / 1e9:.1f} GB, {budget / 1e9:.1f} GB at gpu_memory_utilization "
                f"{gpu_memory_utilization}: raise --tp/--pp, use --dtype fp8, or a larger GPU")
        kv = budget - weights - activation - reserve
        if kv <= 0:
            raise ServesimError(
                f"no memory left for the KV cache on {device.name} at TP={tp} PP={pp}: {budget / 1e9:.1f} GB budget - "
                f"{weights / 1e9:.1f} GB weights - {activation / 1e9:.1f} GB activations - {reserve / 1e9:.1f} GB "
                "reserve; raise --tp/--pp or gpu_memory_utilization, or lower max_num_batched_tokens")
        bytes_per_block = block_size * layers * kv_token_layer
        blocks = int(kv // bytes_per_block)
        if num_blocks is None or blocks < num_blocks:
            num_blocks, worst_kv, per_token = blocks, kv, layers * kv_token_layer
        worst_weights = max(worst_weights, weights)
    return MemoryPlan(total, budget, worst_weights, activation, reserve, worst_kv, per_token, block_size, num_blocks,
                      tp, pp)
