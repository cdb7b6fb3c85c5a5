"""Run one simulation from a RunConfig: resolve model, device and memory, build the workload, run, summarise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from servesim import __version__
from servesim.cluster.driver import run_replica
from servesim.config import RunConfig
from servesim.engine.config import EngineConfig, default_scheduler_limits
from servesim.engine.engine import ReplicaEngine
from servesim.engine.policies import make_policy
from servesim.engine.requests import RequestTable
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.metrics.summary import SLO, summarize
from servesim.models.catalog import get_model, load_model_config
from servesim.models.spec import ModelSpec
from servesim.perf.memory import MemoryPlan, plan_memory
from servesim.perf.roofline import RooflineModel
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

VALID_TP = (1, 2, 4, 8)


@dataclass
class SimulationResult:
    config: RunConfig
    engine_config: EngineConfig
    memory: MemoryPlan | None
    workload: Workload
    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    emits: tuple[np.ndarray, np.ndarray, np.ndarray]
    summary: dict
    meta: dict = field(default_factory=dict)


def resolve_model(cfg: RunConfig) -> ModelSpec:
    model = load_model_config(cfg.model_config) if cfg.model_config else get_model(cfg.model)
    return model.with_dtype(cfg.dtype)


def resolve_engine(cfg: RunConfig, model: ModelSpec, device) -> tuple[EngineConfig, MemoryPlan | None]:
    if cfg.tp not in VALID_TP:
        raise ServesimError(f"--tp {cfg.tp} is not supported; valid choices: {', '.join(map(str, VALID_TP))}")
    if model.num_heads % cfg.tp:
        raise ServesimError(f"--tp {cfg.tp} does not divide {model.name}'s {model.num_heads} attention heads")
    default_tokens, default_seqs = default_scheduler_limits(device.mem_bytes, device.name)
    max_batched = cfg.max_num_batched_tokens or default_tokens
    max_seqs = cfg.max_num_seqs or default_seqs
    max_model_len = cfg.max_model_len or model.max_position_embeddings
    plan = None
    if cfg.num_gpu_blocks is not None:
        blocks = cfg.num_gpu_blocks
    else:
        plan = plan_memory(model, device, cfg.tp, 1, cfg.block_size, cfg.gpu_memory_utilization, max_batched,
                           max_seqs, cfg.kv_cache_dtype, cfg.enforce_eager)
        blocks = plan.num_blocks
    ecfg = EngineConfig(num_gpu_blocks=blocks, block_size=cfg.block_size, max_num_batched_tokens=max_batched,
                        max_num_seqs=max_seqs, max_model_len=max_model_len,
                        enable_prefix_caching=cfg.enable_prefix_caching,
                        long_prefill_token_threshold=cfg.long_prefill_token_threshold,
                        enable_chunked_prefill=cfg.enable_chunked_prefill, watermark=cfg.watermark)
    ecfg.validate()
    return ecfg, plan


def make_cost_model(cfg: RunConfig, model: ModelSpec, device, ecfg: EngineConfig) -> RooflineModel:
    """The step clock a run uses (the planner's analytic bounds use the same one)."""
    return RooflineModel(model, device, tp=cfg.tp, kv_dtype=cfg.kv_cache_dtype, step_overhead=cfg.step_overhead)


def run_simulation(cfg: RunConfig, progress: Callable[[int], None] | None = None,
                   workload: Workload | None = None) -> SimulationResult:
    model = resolve_model(cfg)
    device = get_device(cfg.gpu)
    device.peak_flops(model.dtype)  # fails early for FP8 on a GPU without it
    ecfg, plan = resolve_engine(cfg, model, device)
    cost = make_cost_model(cfg, model, device, ecfg)
    if workload is None:
        workload = build_workload(cfg)
    table = RequestTable(workload.prompt_len, workload.output_len, workload.prefix_ids, workload.prefix_block_tokens)
    engine = ReplicaEngine(ecfg, cost, make_policy(cfg.policy), table)
    run_replica(engine, workload, progress)
    requests = table.outputs_as_numpy()
    steps = engine.steps.as_numpy()
    emits = engine.emits.as_numpy()
    slo = SLO(cfg.slo_ttft, cfg.slo_tpot)
    summary = summarize(requests, steps, emits, slo, ecfg.num_gpu_blocks - 1)
    meta = {
        "servesim_version": __version__,
        "seed": cfg.seed,
        "model": {"name": model.name, "hf_id": model.hf_id, "params": model.num_params, "dtype": model.dtype},
        "device": device.name,
        "cost_model": "roofline",
        "policy": cfg.policy,
    }
    return SimulationResult(cfg, ecfg, plan, workload, requests, steps, emits, summary, meta)
