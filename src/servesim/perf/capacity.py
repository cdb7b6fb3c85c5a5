"""What fits: the vLLM memory plan of a model on a GPU for each tensor-parallel size (`servesim fit`)."""

from __future__ import annotations

from servesim.engine.config import default_scheduler_limits
from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import ModelSpec
from servesim.perf.memory import plan_memory
from servesim.perf.parallel import VALID_TP, check_parallelism

GiB = 1024**3


def fit_rows(model: ModelSpec, device: Device, pp: int = 1, kv_dtype: str | None = None, block_size: int = 16,
             gpu_memory_utilization: float = 0.9, max_num_batched_tokens: int | None = None,
             max_num_seqs: int | None = None, enforce_eager: bool = False,
             max_model_len: int | None = None) -> list[dict]:
    """One row per TP size: the memory split in GiB and the tokens the KV cache holds, or why it does not fit."""
    tokens, seqs = default_scheduler_limits(device.mem_bytes, device.name)
    rows = []
    for tp in VALID_TP:
        row = {"tp": tp, "pp": pp, "gpus": tp * pp}
        try:
            check_parallelism(model, device, tp, pp)
            plan = plan_memory(model, device, tp, pp, block_size, gpu_memory_utilization,
                               max_num_batched_tokens or tokens, max_num_seqs or seqs, kv_dtype, enforce_eager)
        except ServesimError as e:
            rows.append(row | {"fits": False, "reason": str(e)})
            continue
        max_len = max_model_len or model.max_position_embeddings
        row |= {
            "fits": plan.max_tokens >= max_len,
            "total_gib": plan.total_bytes / GiB, "budget_gib": plan.budget_bytes / GiB,
            "weights_gib": plan.weight_bytes / GiB, "activation_gib": plan.activation_bytes / GiB,
            "reserve_gib": plan.reserve_bytes / GiB, "kv_gib": plan.kv_bytes / GiB,
            "kv_bytes_per_token": plan.kv_bytes_per_token, "num_blocks": plan.num_blocks,
            "max_tokens": plan.max_tokens, "max_full_requests": plan.max_tokens // max_len,
        }
        if not row["fits"]:
            row["reason"] = (f"KV cache holds {plan.max_tokens} tokens < max_model_len {max_len}: vLLM refuses to "
                             "start unless --max-model-len is lowered")
        rows.append(row)
    return rows
