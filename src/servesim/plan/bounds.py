"""What the cost model and the memory planner say about a candidate before any simulation.

- Fit: the memory planner's KV blocks, or why the model does not fit (weights vs usable memory).
- A throughput bound: no schedule can serve more requests per second than the best the step-cost model
  allows. Each step of T tokens costs at least the step of T tokens without attention context, every
  request needs (computed prompt tokens + output tokens - 1) step tokens, decode steps carry at most
  `max_num_seqs` requests, and (Little's law) the KV blocks a request holds for its decode steps are bounded
  by the cache size. The capacity search starts from this bound; the pruning uses it as an upper bound.
- Latency floors: a request's TTFT is at least its prompt's prefill steps run alone, its TPOT at least a
  batch-of-one decode step at its prompt's context. The share of requests whose floors meet the SLO bounds
  the attainment any load can reach.
The bounds hold for cost models whose step time never falls when a step gains tokens or context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.metrics.summary import SLO
from servesim.perf.base import StepShape, decode_shape
from servesim.perf.memory import stage_weight_bytes
from servesim.perf.parallel import pp_layer_split
from servesim.simulate import make_cost_model, resolve_engine, resolve_model
from servesim.workload.workload import Workload

GB = 1e9


@dataclass
class Assessment:
    status: str  # "ok", "no-fit", "unsupported"
    reason: str = ""
    memory: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)
    ub_rps: float = 0.0  # upper bound on requests/s one replica can serve
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


def assess(cfg: RunConfig, workload: Workload) -> Assessment:
    """Fit, throughput bound and latency floors of one replica configuration on a workload sample."""
    try:
        model = resolve_model(cfg)
        device = get_device(cfg.gpu)
        device.peak_flops(model.dtype)
    except ServesimError as e:
        return Assessment("unsupported", str(e))
    # the heaviest pipeline stage decides whether the weights fit
    weights = max(stage_weight_bytes(model, cfg.tp, cfg.pp, stage, layers)
                  for stage, layers in enumerate(pp_layer_split(model.num_layers, cfg.pp)))
    budget = device.mem_bytes * cfg.gpu_memory_utilization
    memory = {"weights_gb_per_gpu": weights / GB, "usable_gb_per_gpu": budget / GB, "gpu_gb": device.mem_bytes / GB}
    if weights > budget:
        return Assessment("no-fit", f"weights {weights / GB:.1f} GB/GPU > {budget / GB:.1f} GB usable "
                          f"({device.mem_bytes / GB:.1f} GB x {cfg.gpu_memory_utilization})", memory)
    try:
        ecfg, plan = resolve_engine(cfg, model, device)
    except ServesimError as e:
        return Assessment("no-fit", str(e), memory)
    if plan is not None:
        memory.update(kv_gb_per_gpu=plan.kv_bytes / GB, kv_tokens=plan.max_tokens, num_gpu_blocks=plan.num_blocks)
    engine = {"max_num_seqs": ecfg.max_num_seqs, "max_num_batched_tokens": ecfg.max_num_batched_tokens,
              "max_model_len": ecfg.max_model_len, "num_gpu_blocks": ecfg.num_gpu_blocks}
    cost = make_cost_model(cfg, model, device, ecfg)

    computed = computed_prompt_tokens(workload, ecfg.enable_prefix_caching)
    out = workload.output_len
    budget_tokens = ecfg.max_num_batched_tokens
    # Every scheduled token rides in a step of at most `budget_tokens`; bigger steps amortise best.
    token_rate = budget_tokens / _bare_step(cost, budget_tokens)
    by_tokens = token_rate / float(np.mean(computed + out - 1))
    decode_tokens = float(np.mean(out - 1))
    batch = min(ecfg.max_num_seqs, ecfg.num_gpu_blocks - 1)
    by_batch = batch / cost.step_time(decode_shape(batch, batch)) / decode_tokens if decode_tokens > 0 else math.inf
    # Little's law on KV blocks: a decoding request holds its computed prompt's blocks for (output - 1) steps.
    block_steps = float(np.mean(np.ceil(computed / ecfg.block_size) * (out - 1)))
    step_floor = cost.step_time(decode_shape(1, 1))
    by_kv = (ecfg.num_gpu_blocks - 1) / (block_steps * step_floor) if block_steps > 0 else math.inf
    ub = min(by_tokens, by_batch, by_kv)

    chunk = ecfg.max_num_batched_tokens
    if ecfg.long_prefill_token_threshold:
        chunk = min(chunk, ecfg.long_prefill_token_threshold)
    floors: dict[int, float] = {}
    ttft = np.empty(len(computed))
    for i, tokens in enumerate(computed.tolist()):
        if tokens not in floors:
            floors[tokens] = _prefill_floor(cost, tokens, chunk)
        ttft[i] = floors[tokens]
    tpot = np.full(len(out), np.nan)
    multi = out > 1
    prompt = workload.prompt_len
    tpot[multi] = [cost.step_time(decode_shape(1, int(p) + 1)) for p in prompt[multi]]
    terms = {"ub_by_tokens": by_tokens, "ub_by_batch": by_batch, "ub_by_kv": by_kv}
    return Assessment("ok", "", memory, engine, ub, terms, ttft, tpot)

