"""Parallel layouts: which TP/PP splits vLLM accepts, how it splits layers over stages, its CUDA-graph sizes."""

from __future__ import annotations

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import ModelSpec

VALID_TP = (1, 2, 4, 8)


def cudagraph_sizes(max_num_seqs: int, max_tokens: int) -> list[int]:
    """vLLM's CUDA-graph capture sizes: 1, 2, 4, multiples of 8 below 256, then of 16 up to
    min(2 * max_num_seqs, 512); max_num_batched_tokens too if it fits."""
    top = min(2 * max_num_seqs, 512)
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, top + 1, 16))
    sizes = [s for s in sizes if s <= top]
    if max_tokens <= top:
        sizes.append(max_tokens)
    return sorted(set(sizes))


def pp_layer_split(num_layers: int, pp: int) -> list[int]:
    """Layers per stage as vLLM's get_pp_indices splits them: the remainder goes to the stages before the last."""
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return parts


def check_parallelism(model: ModelSpec, device: Device, tp: int, pp: int) -> None:
    """The one-line errors for parallel layouts vLLM would refuse."""
    if tp not in VALID_TP:
        raise ServesimError(f"--tp {tp} is not supported; valid choices: {', '.join(map(str, VALID_TP))}")
    if model.num_heads % tp:
        valid = [t for t in VALID_TP if model.num_heads % t == 0]
        raise ServesimError(f"--tp {tp} does not divide {model.name}'s {model.num_heads} attention heads; "
                            f"valid choices: {', '.join(map(str, valid))}")
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise ServesimError(f"--tp {tp} neither divides nor is a multiple of {model.name}'s {model.num_kv_heads} "
                            "KV heads")
    if pp < 1 or pp > model.num_layers:
        raise ServesimError(f"--pp {pp} must be between 1 and {model.name}'s {model.num_layers} layers")
    if tp > device.gpus_per_node:
        raise ServesimError(f"--tp {tp} exceeds the {device.gpus_per_node} GPUs of one {device.name} node; "
                            "tensor parallelism stays within a node (use --pp across nodes)")
    if model.intermediate_size % tp:
        raise ServesimError(f"--tp {tp} does not divide {model.name}'s intermediate size {model.intermediate_size}")
