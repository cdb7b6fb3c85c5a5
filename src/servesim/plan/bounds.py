"""What the cost model and the memory planner say about a candidate before any simulation.

- Fit: the memory planner's KV blocks, or why the model does not fit (weights vs usable memory, or a KV
  cache that cannot hold one request of max_model_len, which vLLM refuses to start with).
- A throughput bound: no schedule can serve more requests per second than the best the step-cost model
  allows. Each step of T tokens costs at least the step of T tokens without attention context, every
  request needs (computed prompt tokens + output tokens - 1) step tokens, decode steps carry at most
  `max_num_seqs` requests, and (Little's law) the KV blocks a request holds for its decode steps are bounded
  by the cache size. The capacity search starts from this bound; the pruning uses it as an upper bound.
- Latency floors: a request's TTFT is at least its prompt's prefill steps run alone, its TPOT at least a
  batch-of-one decode step at its prompt's context. The share of requests whose floors meet the SLO bounds
  the attainment any load can reach.
A disaggregated xPyD unit combines its pools: the prefill pool's prompt tokens (x replicas), the decode
pool's tokens, batch and KV terms (y replicas; every output token, the first included, is computed there),
and the KV link (each transfer holds one prefill replica's outgoing and one decode replica's incoming link);
its TTFT floor adds the KV transfer to the prefill.
The bounds hold for cost models whose step time never falls when a step gains tokens or context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.hardware.links import kv_link
from servesim.metrics.summary import SLO
from servesim.perf.base import StepShape, decode_shape
from servesim.perf.memory import stage_weight_bytes
from servesim.perf.parallel import pp_layer_split
from servesim.simulate import cluster_pools, make_cost_model, resolve_engine, resolve_kv_dtype, resolve_model
from servesim.workload.workload import Workload

GB = 1e9


@dataclass
class Assessment:
    status: str  # "ok", "no-fit", "unsupported"
    reason: str = ""
    memory: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    ub_rps: float = 0.0  # upper bound on requests/s one replica (one xPyD unit) can serve
    ub_terms: dict = field(default_factory=dict)
    ttft_floor: np.ndarray | None = None  # per request of the sample, seconds
    tpot_floor: np.ndarray | None = None  # NaN for one-token answers

    def attainment_bound(self, slo: SLO) -> float:
        ok = np.ones(len(self.ttft_floor), dtype=bool)
        if slo.ttft is not None:
            ok &= self.ttft_floor <= slo.ttft
        if slo.tpot is not None:
            ok &= np.isnan(self.tpot_floor) | (self.tpot_floor <= slo.tpot)
        return float(ok.mean())

    def summary(self, slo: SLO | None = None) -> dict:
        out = {"ub_requests_per_s": self.ub_rps, **self.ub_terms}
        if self.ttft_floor is not None:
            out["ttft_floor_p90_s"] = float(np.percentile(self.ttft_floor, 90))
            finite = self.tpot_floor[~np.isnan(self.tpot_floor)]
            out["tpot_floor_p90_s"] = float(np.percentile(finite, 90)) if len(finite) else None
            if slo is not None:
                out["attainment_bound"] = self.attainment_bound(slo)
        return out


def computed_prompt_tokens(workload: Workload, prefix_caching: bool) -> np.ndarray:
    """Prompt tokens each request must compute at least: all of them, less the longest prefix any earlier
    request could have left in the cache (a full hit still recomputes the last token)."""
    prompt = workload.prompt_len
    if not prefix_caching or workload.prefix_ids is None:
        return prompt.copy()
    seen: set = set()
    hits = np.zeros(len(prompt), dtype=np.int64)
    for i, chain in enumerate(workload.prefix_ids):
        matched = 0
        for block in chain:
            if block not in seen:
                break
            matched += 1
        hits[i] = min(matched * workload.prefix_block_tokens, int(prompt[i]) - 1)
        seen.update(chain)
    return prompt - hits


def _prefill_floor(cost, tokens: int, chunk: int) -> float:
    """Seconds to prefill `tokens` new tokens alone, in chunks of at most `chunk` (context grows per chunk)."""
    total, done = 0.0, 0
    while done < tokens:
        n = min(chunk, tokens - done)
        last = done + n == tokens
        shape = StepShape(n, 1, int(last), 1, n, float(n * done + n * (n + 1) / 2), done + n, 0, 0)
        total += cost.step_time(shape)
        done += n
    return total


def _bare_step(cost, tokens: int) -> float:
    """A step of `tokens` new tokens with no attention context and nothing sampled: a floor on any step that
    schedules as many tokens."""
    return cost.step_time(StepShape(tokens, 1, 0, 1, tokens, 0.0, 0, 0, 0))


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def _rate(capacity: float, need: float) -> float:
    return capacity / need if need > 0 else math.inf


@dataclass
class PoolEval:
    """One replica configuration on the sample, before it is given a role: fit, and the rates and floors
    the co-located, prefill and decode bounds are made of."""

    status: str
    reason: str = ""
    memory: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    per_replica_gpus: int = 0
    computed: np.ndarray | None = None  # prompt tokens each request must compute (prefix hits taken off)
    token_rate: float = 0.0  # scheduled tokens/s at best (full budget steps)
    batch_rate: float = 0.0  # decode request-steps/s at best (max_num_seqs per step)
    kv_rate: float = 0.0  # KV block-steps/s at best: (blocks - 1) / the fastest step
    block_size: int = 16
    prefill_floor: np.ndarray | None = None  # per request: its prefill run alone, seconds
    tpot_floor: np.ndarray | None = None  # per request: a batch-of-one decode step at its context


def _evaluate_pool(cfg: RunConfig, workload: Workload) -> PoolEval:
    try:
        model = resolve_model(cfg)
        device = get_device(cfg.gpu)
        device.peak_flops(model.dtype)
    except ServesimError as e:
        return PoolEval("unsupported", str(e))
    # the heaviest pipeline stage decides whether the weights fit
    weights = max(stage_weight_bytes(model, cfg.tp, cfg.pp, stage, layers)
                  for stage, layers in enumerate(pp_layer_split(model.num_layers, cfg.pp)))
    budget = device.mem_bytes * cfg.gpu_memory_utilization
    memory = {"weights_gb_per_gpu": weights / GB, "usable_gb_per_gpu": budget / GB, "gpu_gb": device.mem_bytes / GB}
    if weights > budget:
        return PoolEval("no-fit", f"weights {weights / GB:.1f} GB/GPU > {budget / GB:.1f} GB usable "
                        f"({device.mem_bytes / GB:.1f} GB x {cfg.gpu_memory_utilization})", memory)
    try:
        ecfg, plan = resolve_engine(cfg, model, device)
    except ServesimError as e:
        return PoolEval("no-fit", str(e), memory)
    if plan is not None:
        memory.update(kv_gb_per_gpu=plan.kv_bytes / GB, kv_tokens=plan.max_tokens, num_gpu_blocks=plan.num_blocks)
    engine = {"max_num_seqs": ecfg.max_num_seqs, "max_num_batched_tokens": ecfg.max_num_batched_tokens,
              "max_model_len": ecfg.max_model_len, "num_gpu_blocks": ecfg.num_gpu_blocks}
    cost = make_cost_model(cfg, model, device, ecfg)

    computed = computed_prompt_tokens(workload, ecfg.enable_prefix_caching)
    # Every scheduled token rides in a step of at most the token budget; bigger steps amortise best.
    token_rate = ecfg.max_num_batched_tokens / _bare_step(cost, ecfg.max_num_batched_tokens)
    batch = min(ecfg.max_num_seqs, ecfg.num_gpu_blocks - 1)
    batch_rate = batch / cost.step_time(decode_shape(batch, batch))
    kv_rate = (ecfg.num_gpu_blocks - 1) / cost.step_time(decode_shape(1, 1))

    chunk = ecfg.max_num_batched_tokens
    if ecfg.long_prefill_token_threshold:
        chunk = min(chunk, ecfg.long_prefill_token_threshold)
    floors: dict[int, float] = {}
    prefill = np.empty(len(computed))
    for i, tokens in enumerate(computed.tolist()):
        if tokens not in floors:
            floors[tokens] = _prefill_floor(cost, tokens, chunk)
        prefill[i] = floors[tokens]
    out = workload.output_len
    tpot = np.full(len(out), np.nan)
    multi = out > 1
    tpot[multi] = [cost.step_time(decode_shape(1, int(p) + 1)) for p in workload.prompt_len[multi]]
    return PoolEval("ok", "", memory, engine, cfg.tp * cfg.pp, computed, token_rate, batch_rate, kv_rate,
                    ecfg.block_size, prefill, tpot)


def _decode_terms(e: PoolEval, workload: Workload, first_token_here: bool) -> dict[str, float]:
    """Requests/s one replica can decode: by tokens, by decode batch, by KV blocks (Little's law: a decoding
    request holds its computed prompt's blocks for its output - 1 decode steps)."""
    out = workload.output_len
    tokens = out if first_token_here else e.computed + out - 1
    block_steps = _mean(np.ceil(e.computed / e.block_size) * (out - 1))
    return {"by_tokens": _rate(e.token_rate, _mean(tokens)), "by_batch": _rate(e.batch_rate, _mean(out - 1)),
            "by_kv": _rate(e.kv_rate, block_steps)}


def _not_ok(e: PoolEval, where: str = "") -> Assessment:
    return Assessment(e.status, where + e.reason, e.memory)


class Assessor:
    """Assesses candidates on one workload sample. Pool evaluations are memoised, so the many xPyD units
    built from the same replica configurations cost one evaluation each."""

    def __init__(self, workload: Workload):
        self.workload = workload
        self._pools: dict[tuple, PoolEval] = {}

    def pool(self, cfg: RunConfig) -> PoolEval:
        cfg = replace(cfg, replicas=1, prefill_pool=None, decode_pool=None)
        key = tuple(vars(cfg).values())
        if key not in self._pools:
            self._pools[key] = _evaluate_pool(cfg, self.workload)
        return self._pools[key]

    def assess(self, cfg: RunConfig) -> Assessment:
        """Fit, throughput bound and latency floors of one replica, or one xPyD unit when the config has pools."""
        if cfg.prefill_pool is None:
            return self._colocated(cfg)
        return self._disaggregated(cfg)

    def _colocated(self, cfg: RunConfig) -> Assessment:
        e = self.pool(cfg)
        if e.status != "ok":
            return _not_ok(e)
        terms = _decode_terms(e, self.workload, first_token_here=False)
        terms = {f"ub_{k}": v for k, v in terms.items()}
        return Assessment("ok", "", e.memory, e.engine, min(terms.values()), terms, e.prefill_floor, e.tpot_floor)

    def _disaggregated(self, cfg: RunConfig) -> Assessment:
        try:
            ppool, dpool = cluster_pools(cfg)
        except ServesimError as e:
            return Assessment("unsupported", str(e))
        p = self.pool(replace(cfg, gpu=ppool.gpu, tp=ppool.tp))
        d = self.pool(replace(cfg, gpu=dpool.gpu, tp=dpool.tp))
        memory = {"prefill": p.memory, "decode": d.memory}
        for e, pool in ((p, ppool), (d, dpool)):
            if e.status != "ok":
                return Assessment(e.status, f"{pool.role} pool {pool.label()}: {e.reason}", memory)
        model = resolve_model(cfg)
        pdev, ddev = get_device(ppool.gpu), get_device(dpool.gpu)
        try:
            link = kv_link(cfg.kv_link, pdev, ddev, ppool.gpus + dpool.gpus)
        except ServesimError as e:
            return Assessment("unsupported", str(e), memory)
        w = self.workload
        kv_bytes = w.prompt_len * model.kv_bytes_per_token(resolve_kv_dtype(cfg, model))
        bandwidth = link.bandwidth * min(p.per_replica_gpus, d.per_replica_gpus)
        wire = kv_bytes / bandwidth
        decode = _decode_terms(d, w, first_token_here=True)
        terms = {"ub_prefill_pool": ppool.count * _rate(p.token_rate, _mean(p.computed)),
                 **{f"ub_decode_pool_{k}": dpool.count * v for k, v in decode.items()},
                 "ub_by_link": min(ppool.count, dpool.count) * _rate(1.0, _mean(wire))}
        # the KV leaves after the prefill (layer-wise: the last layer's share after it) and crosses the link
        transfer = (wire / model.num_layers if cfg.kv_layerwise else wire) + link.latency
        engine = {k: p.engine[k] for k in ("max_num_seqs", "max_num_batched_tokens", "max_model_len")}
        engine.update(prefill_num_gpu_blocks=p.engine["num_gpu_blocks"],
                      decode_num_gpu_blocks=d.engine["num_gpu_blocks"])
        memory["kv_link"] = {**link.describe(), "kv_gb_per_request_mean": _mean(kv_bytes) / GB}
        return Assessment("ok", "", memory, engine, min(terms.values()), terms, p.prefill_floor + transfer,
                          d.tpot_floor)


def assess(cfg: RunConfig, workload: Workload) -> Assessment:
    """Fit, throughput bound and latency floors of one replica configuration (or xPyD unit) on a sample."""
    return Assessor(workload).assess(cfg)
