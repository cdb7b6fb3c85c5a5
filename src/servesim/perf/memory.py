"""How vLLM splits GPU memory: weights, activation peak, non-torch and CUDA-graph reserves, then KV blocks.

vLLM profiles a forward pass of `max_num_batched_tokens` tokens and sizes the KV cache as
`total * gpu_memory_utilization - weights - peak activations - non-torch memory`. The activation and
reserve terms here are estimates of those measurements; the number of blocks follows exactly from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import DTYPE_BYTES, ModelSpec

GB = 1e9
NON_TORCH_BYTES = 0.4 * 1024**3  # CUDA context growth, allocator slack (seen as vLLM's "non-torch memory")
NCCL_BYTES = 0.4 * 1024**3  # NCCL buffers when TP > 1
CUDA_GRAPH_BYTES = 0.5 * 1024**3  # captured graphs' pools; 0 with enforce_eager


@dataclass(frozen=True)
class MemoryPlan:
    total_bytes: float
    budget_bytes: float  # total * gpu_memory_utilization
    weight_bytes: float
    activation_bytes: float
    reserve_bytes: float
    kv_bytes: float
    kv_bytes_per_token: float  # per GPU
    block_size: int
    num_blocks: int

    @property
    def max_tokens(self) -> int:
        return (self.num_blocks - 1) * self.block_size

    def as_dict(self) -> dict:
        return {**asdict(self), "max_tokens": self.max_tokens}


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads are split across TP ranks; with fewer heads than ranks each rank keeps a replica of one."""
    return max(1, model.num_kv_heads // tp)


def plan_memory(model: ModelSpec, device: Device, tp: int = 1, pp: int = 1, block_size: int = 16,
                gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int = 8192, max_num_seqs: int = 256,
                kv_dtype: str | None = None, enforce_eager: bool = False) -> MemoryPlan:
    if not 0.0 < gpu_memory_utilization <= 1.0:
        raise ServesimError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if pp > model.num_layers:
        raise ServesimError(f"--pp {pp} exceeds {model.name}'s {model.num_layers} layers")
    total = device.mem_bytes
    budget = total * gpu_memory_utilization
    weights = model.weight_bytes / (tp * pp)
    inter, hidden = model.intermediate_size / tp, model.hidden_size
    qkv = (model.q_size + 2 * model.kv_size) / tp
    # Peak of the profiling forward pass: the MLP's gate/up output and its activation, the residual stream,
    # and fp32 logits for max_num_seqs rows in the sampler.
    tokens = max_num_batched_tokens
    activation = tokens * (3 * inter + qkv + 4 * hidden) * 2 + max_num_seqs * model.vocab_size / tp * 4 * 2
    reserve = NON_TORCH_BYTES + (NCCL_BYTES if tp > 1 else 0) + (0 if enforce_eager else CUDA_GRAPH_BYTES)
    kv_per_token = 2 * (model.num_layers / pp) * kv_heads_per_gpu(model, tp) * model.head_dim * DTYPE_BYTES[kv_dtype or model.dtype]
    kv = budget - weights - activation - reserve
    if weights > budget:
        raise ServesimError(
            f"{model.name} needs {weights / GB:.1f} GB of weights per GPU at TP={tp} PP={pp} ({model.dtype}); "
            f"{device.name} has {total / GB:.1f} GB, {budget / GB:.1f} GB at gpu_memory_utilization "
            f"{gpu_memory_utilization}: raise --tp/--pp, use --dtype fp8, or a larger GPU"
        )
    if kv <= 0:
        raise ServesimError(
            f"no memory left for the KV cache: {budget / GB:.1f} GB budget - {weights / GB:.1f} GB weights - "
            f"{activation / GB:.1f} GB activations - {reserve / GB:.1f} GB reserve on {device.name} at TP={tp}; "
            "raise --tp or lower max_num_batched_tokens"
        )
    num_blocks = int(kv // (kv_per_token * block_size))
    return MemoryPlan(total, budget, weights, activation, reserve, kv, kv_per_token, block_size, num_blocks)
