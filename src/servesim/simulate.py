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
from servesim.perf.memory import MemoryPlan, default_kv_dtype, plan_memory
from servesim.perf.parallel import check_parallelism
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

COST_MODELS = ("calibrated", "roofline")
KV_DTYPES = ("bf16", "fp16", "fp8")
INTERCONNECTS = ("nvlink", "pcie")


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


def resolve_kv_dtype(cfg: RunConfig, model: ModelSpec) -> str:
    if cfg.kv_cache_dtype is None:
        return default_kv_dtype(model)
    if cfg.kv_cache_dtype not in KV_DTYPES:
        raise ServesimError(f"unknown --kv-cache-dtype {cfg.kv_cache_dtype!r}; valid choices: {', '.join(KV_DTYPES)}")
    return cfg.kv_cache_dtype


def resolve_engine(cfg: RunConfig, model: ModelSpec, device) -> tuple[EngineConfig, MemoryPlan | None]:
    check_parallelism(model, device, cfg.tp, cfg.pp)
    default_tokens, default_seqs = default_scheduler_limits(device.mem_bytes, device.name)
    max_batched = cfg.max_num_batched_tokens or default_tokens
    max_seqs = cfg.max_num_seqs or default_seqs
    max_model_len = cfg.max_model_len or model.max_position_embeddings
    plan = None
    if cfg.num_gpu_blocks is not None:
        blocks = cfg.num_gpu_blocks
    else:
        plan = plan_memory(model, device, cfg.tp, cfg.pp, cfg.block_size, cfg.gpu_memory_utilization, max_batched,
                           max_seqs, resolve_kv_dtype(cfg, model), cfg.enforce_eager)
        blocks = plan.num_blocks
    ecfg = EngineConfig(num_gpu_blocks=blocks, block_size=cfg.block_size, max_num_batched_tokens=max_batched,
                        max_num_seqs=max_seqs, max_model_len=max_model_len,
                        enable_prefix_caching=cfg.enable_prefix_caching,
                        long_prefill_token_threshold=cfg.long_prefill_token_threshold,
                        enable_chunked_prefill=cfg.enable_chunked_prefill, watermark=cfg.watermark)
    ecfg.validate()
    return ecfg, plan


def make_cost_model(cfg: RunConfig, model: ModelSpec, device, ecfg: EngineConfig):
    """The step clock a run uses (the planner's analytic bounds use the same one): the calibrated kernel
    model (default) or the plain roofline."""
    from servesim.perf.kernels.calibration import ENGINES

    if cfg.cost_model not in COST_MODELS:
        raise ServesimError(f"unknown --cost-model {cfg.cost_model!r}; valid choices: {', '.join(COST_MODELS)}")
    if cfg.engine not in ENGINES:
        raise ServesimError(f"unknown --engine {cfg.engine!r}; valid choices: {', '.join(ENGINES)}")
    if cfg.interconnect is not None and cfg.interconnect not in INTERCONNECTS:
        raise ServesimError(f"unknown --interconnect {cfg.interconnect!r}; valid choices: {', '.join(INTERCONNECTS)}")
    kv_dtype = resolve_kv_dtype(cfg, model)
    if cfg.cost_model == "roofline":
        from servesim.perf.roofline import RooflineModel

        if cfg.pp > 1:
            raise ServesimError("--pp > 1 needs --cost-model calibrated (the roofline model has no pipeline stages)")
        return RooflineModel(model, device, tp=cfg.tp, kv_dtype=kv_dtype, step_overhead=cfg.step_overhead)
    from servesim.perf.calibrated import CalibratedModel
    from servesim.perf.kernels.calibration import load_calibration

    calibration = load_calibration(device, cfg.engine, cfg.kernels)
    return CalibratedModel(model, device, tp=cfg.tp, pp=cfg.pp, engine=cfg.engine, kv_dtype=kv_dtype,
                           calibration=calibration, step_overhead=cfg.step_overhead,
                           max_tokens=ecfg.max_num_batched_tokens, max_num_seqs=ecfg.max_num_seqs,
                           interconnect=cfg.interconnect, cuda_graphs=not cfg.enforce_eager)


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
        "cost_model": cfg.cost_model,
        "engine": cfg.engine,
        "policy": cfg.policy,
    }
    return SimulationResult(cfg, ecfg, plan, workload, requests, steps, emits, summary, meta)
