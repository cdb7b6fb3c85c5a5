"""Run one simulation from a RunConfig: resolve model, devices and memory, build the workload and the cluster
(one replica, co-located replicas behind a router, or disaggregated prefill/decode pools), run, summarise."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from servesim import __version__
from servesim.allocator import keep_freed_memory
from servesim.cluster.driver import ClusterRun
from servesim.cluster.replica import Replica
from servesim.cluster.router import check_router, make_router
from servesim.cluster.spec import PoolSpec, parse_pool
from servesim.cluster.transfer import KVTransfer
from servesim.config import RunConfig
from servesim.engine.config import EngineConfig, default_scheduler_limits
from servesim.engine.engine import ReplicaEngine
from servesim.engine.policies import make_policy, parse_policy_options, policy_engine_defaults
from servesim.engine.requests import RequestTable
from servesim.errors import ServesimError, choices_error
from servesim.hardware.catalog import get_device
from servesim.hardware.links import KV_LINKS, kv_link
from servesim.metrics.cluster import combine_colocated, combine_disaggregated, cluster_summary
from servesim.metrics.steps import StepTable
from servesim.metrics.summary import SLO, summarize
from servesim.models.catalog import get_model, load_model_config
from servesim.models.spec import ModelSpec
from servesim.perf.memory import MemoryPlan, default_kv_dtype, plan_memory
from servesim.perf.parallel import check_parallelism
from servesim.perf.profile import CalibratedProfile, find_profile
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

COST_MODELS = ("calibrated", "roofline")
KV_DTYPES = ("bf16", "fp16", "fp8")
INTERCONNECTS = ("nvlink", "pcie")


def calibrated_setup(cfg: RunConfig, profile: CalibratedProfile, model: ModelSpec):
    """A fitted profile brings its own clock (profile.cost_model()), KV memory and served scheduler limits (flags
    still override)."""
    profile.check_model(model)
    served_block = profile.scheduler.get("block_size")
    if served_block and cfg.block_size != served_block:
        raise ServesimError(f"profile {profile.name!r} was measured with block_size {served_block}; "
                            f"pass --block-size {served_block} (got {cfg.block_size})")
    if cfg.prefill_pool or cfg.decode_pool:
        raise ServesimError(f"profile {profile.name!r} describes one served machine: it runs co-located replicas "
                            "(--replicas N), not --prefill-pool/--decode-pool")
    if cfg.tp != 1 or cfg.pp != 1:
        raise ServesimError(f"profile {profile.name!r} was calibrated on one device; --tp {cfg.tp} --pp {cfg.pp} "
                            "is not supported with it")
    changes = {k: v for k, v in profile.scheduler.items() if k != "block_size" and getattr(cfg, k, None) is None}
    if cfg.num_gpu_blocks is None:
        changes["num_gpu_blocks"] = profile.num_blocks(model, cfg.block_size, cfg.kv_cache_dtype)
    return replace(cfg, **changes), profile.serving.frontend_latency


@dataclass
class SimulationResult:
    config: RunConfig
    engine_config: EngineConfig  # the first replica's (the prefill pool's when disaggregated)
    memory: MemoryPlan | None
    workload: Workload
    requests: dict[str, np.ndarray]
    steps: StepTable  # a mapping of step columns, built on first read
    emits: tuple[np.ndarray, np.ndarray, np.ndarray]
    summary: dict
    meta: dict = field(default_factory=dict)
    replicas: list[dict] = field(default_factory=list)  # one entry per replica: role, GPU, TP, engine sizes


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
    """vLLM's engine settings for one replica of cfg.tp x cfg.pp GPUs: the user's, else the policy's, else
    vLLM's defaults for the device; KV blocks from the memory plan."""
    check_parallelism(model, device, cfg.tp, cfg.pp)
    default_tokens, default_seqs = default_scheduler_limits(device.mem_bytes, device.name)
    max_model_len = cfg.max_model_len or model.max_position_embeddings
    implied = policy_engine_defaults(cfg.policy, max_model_len)
    max_batched = cfg.max_num_batched_tokens or implied.get("max_num_batched_tokens") or default_tokens
    max_seqs = cfg.max_num_seqs or implied.get("max_num_seqs") or default_seqs
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
                        enable_chunked_prefill=cfg.enable_chunked_prefill and implied.get("enable_chunked_prefill", True),
                        watermark=cfg.watermark or implied.get("watermark", 0.0))
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
    # A user's kernel file counts by its version: an edited file is a new clock.
    kernels_version = os.stat(cfg.kernels).st_mtime_ns if cfg.kernels and os.path.exists(cfg.kernels) else None
    return _calibrated_clock(model, device, cfg.tp, cfg.pp, cfg.engine, kv_dtype, cfg.kernels, kernels_version,
                             cfg.step_overhead, ecfg.max_num_batched_tokens, ecfg.max_num_seqs, cfg.interconnect,
                             cfg.enforce_eager)


# A clock holds prices and caches of them, never run state, so runs with the same inputs share one: a sweep of
# scheduler knobs builds it once (its tables take a few ms). `kernels_version` is only part of the cache key.
@functools.lru_cache(maxsize=16)
def _calibrated_clock(model: ModelSpec, device, tp: int, pp: int, engine: str, kv_dtype: str, kernels: str | None,
                      kernels_version: int | None, step_overhead: float | None, max_tokens: int, max_num_seqs: int,
                      interconnect: str | None, enforce_eager: bool):
    from servesim.perf.calibrated import CalibratedModel
    from servesim.perf.kernels.calibration import load_calibration

    calibration = load_calibration(device, engine, kernels)
    return CalibratedModel(model, device, tp=tp, pp=pp, engine=engine, kv_dtype=kv_dtype, calibration=calibration,
                           step_overhead=step_overhead, max_tokens=max_tokens, max_num_seqs=max_num_seqs,
                           interconnect=interconnect, cuda_graphs=not enforce_eager)


def cluster_pools(cfg: RunConfig) -> list[PoolSpec]:
    """One co-located pool (`--gpu`, `--tp`, `--replicas`), or the prefill and decode pools."""
    make_policy(cfg.policy, **parse_policy_options(cfg.policy_options))  # checks name and options up front
    check_router(cfg.router)
    if cfg.kv_link not in KV_LINKS:
        raise choices_error("KV link", cfg.kv_link, KV_LINKS)
    if cfg.replicas < 1:
        raise ServesimError(f"--replicas must be >= 1, got {cfg.replicas}")
    if cfg.router_load_cap < 0:
        raise ServesimError(f"--router-load-cap must be >= 0, got {cfg.router_load_cap}")
    if (cfg.prefill_pool is None) != (cfg.decode_pool is None):
        given = "--prefill-pool" if cfg.prefill_pool else "--decode-pool"
        raise ServesimError(f"{given} needs its partner: give both --prefill-pool GPU:TPxN and --decode-pool GPU:TPxN")
    if cfg.prefill_pool is None:
        return [PoolSpec("colocated", cfg.gpu, cfg.tp, cfg.replicas, cfg.pp)]
    if cfg.replicas != 1:
        raise ServesimError("--replicas sizes co-located serving; a disaggregated cluster is sized by "
                            "--prefill-pool GPU:TPxN and --decode-pool GPU:TPxN")
    return [parse_pool(cfg.prefill_pool, "prefill", "--prefill-pool", cfg.pp),
            parse_pool(cfg.decode_pool, "decode", "--decode-pool", cfg.pp)]


def _build_pool(cfg: RunConfig, model: ModelSpec, pool: PoolSpec, table: RequestTable, first_index: int,
                profile: CalibratedProfile | None = None):
    if profile is not None:
        device = profile.device
    else:
        device = get_device(pool.gpu)
        device.peak_flops(model.dtype)  # fails early for FP8 on a GPU without it
    cfg = replace(cfg, gpu=pool.gpu, tp=pool.tp)  # the pool's own GPU and TP (PP is the run's)
    try:
        ecfg, plan = resolve_engine(cfg, model, device)
    except ServesimError as e:
        if pool.role == "colocated":
            raise
        # e.g. a decode pool whose KV cache cannot hold one request of max_model_len
        raise ServesimError(f"{pool.role} pool {pool.label()}: {e}") from None
    # One clock for the pool's identical replicas: it holds only prices (and caches of them), no replica state.
    cost = profile.cost_model() if profile is not None else make_cost_model(cfg, model, device, ecfg)
    replicas = []
    for k in range(pool.count):
        engine = ReplicaEngine(ecfg, cost, make_policy(cfg.policy, **parse_policy_options(cfg.policy_options)), table,
                               replica_id=first_index + k)
        replicas.append(Replica(first_index + k, pool.role, device.name, pool.tp, engine))
    return replicas, ecfg, plan, device


def _router(cfg: RunConfig, replicas: list[Replica], workload: Workload):
    capacity = [(r.engine.cfg.num_gpu_blocks - 1) * r.engine.cfg.block_size for r in replicas]
    return make_router(cfg.router, len(replicas), seed=cfg.seed, prefix_ids=workload.prefix_ids,
                       prefix_block_tokens=workload.prefix_block_tokens, capacity_tokens=capacity,
                       load_cap=cfg.router_load_cap)


def _table(workload: Workload, max_tokens=None) -> RequestTable:
    return RequestTable(workload.prompt_len, workload.output_len if max_tokens is None else max_tokens,
                        workload.prefix_ids, workload.prefix_block_tokens,
                        priority=None if workload.priority is None else workload.priority.tolist(),
                        client=None if workload.client is None else workload.client.tolist())


def run_simulation(cfg: RunConfig, progress: Callable[[int], None] | None = None,
                   workload: Workload | None = None, profile: CalibratedProfile | None = None) -> SimulationResult:
    """The Python API: a RunConfig (pools, router, policy, workload settings) in, results out. Pass a built
    `workload` to compare several cluster configurations on identical requests, and a calibrated `profile` to use
    instead of the one `cfg.gpu` names (calibration tries many)."""
    keep_freed_memory()
    model = resolve_model(cfg)
    profile = profile or find_profile(cfg.gpu)
    frontend = 0.0
    if profile is not None:
        cfg, frontend = calibrated_setup(cfg, profile, model)
    pools = cluster_pools(cfg)
    if workload is None:
        workload = build_workload(cfg)
    if frontend and workload.closed_loop:  # a client's next request reaches the engine after the frontend's latency
        workload = replace(workload, think_time=workload.think_time + frontend)
    if len(pools) == 1:
        table = _table(workload)
        replicas, ecfg, plan, device = _build_pool(cfg, model, pools[0], table, 0, profile)
        run = ClusterRun(replicas, _router(cfg, replicas, workload))
        run.run(workload, progress)
        requests, steps, emits = combine_colocated(table, replicas, run)
        devices = [device.name]
    else:
        prefill_pool, decode_pool = pools
        ptable = _table(workload, max_tokens=np.ones(len(workload), dtype=np.int64))  # prefill stops at one token
        dtable = _table(workload)
        prefill, ecfg, plan, pdev = _build_pool(cfg, model, prefill_pool, ptable, 0)
        decode, dcfg, _, ddev = _build_pool(cfg, model, decode_pool, dtable, prefill_pool.count)
        link = kv_link(cfg.kv_link, pdev, ddev, prefill_pool.gpus + decode_pool.gpus)
        transfer = KVTransfer(link, model.kv_bytes_per_token(resolve_kv_dtype(cfg, model)), prefill_pool.per_replica,
                              decode_pool.per_replica, model.num_layers, cfg.kv_layerwise, prefill_pool.count,
                              decode_pool.count)
        run = ClusterRun(prefill, _router(cfg, prefill, workload), decode, _router(cfg, decode, workload), transfer)
        run.run(workload, progress)
        requests, steps, emits = combine_disaggregated(ptable, dtable, prefill, decode, run)
        replicas = prefill + decode
        devices = [pdev.name, ddev.name]
    # Latencies are seen from the client, which sent each request this much earlier. A new array, not `-=`: the
    # compiled core's columns are read-only views.
    requests["arrival"] = requests["arrival"] - frontend
    if workload.client is not None:
        requests["client"] = np.asarray(workload.client, dtype=np.int64)
        requests["priority"] = np.asarray(workload.priority, dtype=np.int64)
    slo = SLO(cfg.slo_ttft, cfg.slo_tpot)
    summary = summarize(requests, steps, emits, slo, None)  # the StepTable knows each replica's usable blocks
    gpus = sum(p.gpus for p in pools)
    summary.update(cluster_summary(requests, steps, replicas, pools, gpus, summary, workload.client_names))
    meta = {
        "servesim_version": __version__,
        "seed": cfg.seed,
        "model": {"name": model.name, "hf_id": model.hf_id, "params": model.num_params, "dtype": model.dtype},
        "device": devices[0] if len(set(devices)) == 1 else " + ".join(devices),
        "cost_model": cfg.cost_model if profile is None else f"calibrated profile {profile.name}",
        "engine": cfg.engine,
        "policy": cfg.policy,
        "cluster": {"pools": [{"role": p.role, "gpu": p.gpu, "tp": p.tp, "count": p.count} for p in pools],
                    "router": cfg.router, "gpus": gpus},
    }
    if len(pools) == 2:
        meta["cluster"]["kv_link"] = {**link.describe(), "layerwise": cfg.kv_layerwise,
                                      "bytes_moved": transfer.bytes_moved, "busy_s": transfer.busy_s}
    return SimulationResult(cfg, ecfg, plan, workload, requests, steps, emits, summary, meta,
                            [r.describe() for r in replicas])

