"""One probe: simulate one configuration on one workload and keep what the planner and sweeps need.

A probe keeps scalar metrics and each request's TTFT and TPOT, so SLO attainment and goodput can be
computed afterwards for any SLO: cached probes serve every SLO. Probes of one candidate share one workload
sample, rescaled in time to each probed rate.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from servesim import __version__
from servesim.config import RunConfig
from servesim.metrics.latency import request_latencies
from servesim.metrics.summary import SLO
from servesim.workload.workload import Workload

# Settings that do not change what a simulation computes (SLOs are applied afterwards; the workload's own
# fingerprint stands for how it was made).
_NOT_IN_KEY = ("slo_ttft", "slo_tpot", "qps", "requests", "duration", "workload", "trace", "trace_format", "limit",
               "time_scale", "isl", "osl", "lengths", "arrival", "burstiness", "concurrency", "think_time")


@dataclass
class Probe:
    rate: float  # offered requests/s (0 for a closed loop)
    metrics: dict  # flat scalars: latency percentiles (s), throughput, load
    ttft: np.ndarray  # per request, NaN if rejected
    tpot: np.ndarray  # per request, NaN if rejected or one token
    cached: bool = field(default=False, compare=False)

    def met(self, slo: SLO) -> np.ndarray:
        # SLO.met reads rejection from a NaN E2E; a rejected request is the one with a NaN TTFT.
        return slo.met({"e2e": np.where(np.isnan(self.ttft), np.nan, 0.0), "ttft": self.ttft, "tpot": self.tpot})

    def attainment(self, slo: SLO) -> float:
        return float(self.met(slo).mean())

    def goodput(self, slo: SLO) -> float | None:
        duration = self.metrics.get("duration_s")
        return float(self.met(slo).sum()) / duration if duration else None


def workload_fingerprint(w: Workload) -> str:
    h = hashlib.sha256()
    for arr in (w.prompt_len, w.output_len):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    if w.arrival is not None:
        h.update(np.ascontiguousarray(w.arrival, dtype=np.float64).tobytes())
    h.update(json.dumps([w.concurrency, w.think_time, w.prefix_block_tokens]).encode())
    if w.prefix_ids is not None:
        h.update(json.dumps([list(map(int, c)) for c in w.prefix_ids]).encode())
    return h.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """A hash of servesim's own source and data files: a changed simulator never answers from old results,
    even before its version number moves."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".json", ".yaml") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def config_key(cfg: RunConfig, workload_fp: str, length: ProbeLength | None = None) -> str:
    """Cache key of one configuration on one workload sample (any rate): config, workload, servesim version
    and code, and the rule that sizes probes."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_KEY}
    rule = None if length is None else [length.min_requests, length.seconds, length.max_requests]
    blob = json.dumps({"servesim": __version__, "code": code_fingerprint(), "config": settings,
                       "workload": workload_fp, "length": rule}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ProbeLength:
    """How many requests a probe at a given rate simulates: enough to span `seconds` of arrivals (a short
    window hides the slow queue growth just above capacity), at least `min_requests`, at most the sample."""

    min_requests: int
    seconds: float
    max_requests: int

    def requests(self, rate: float) -> int:
        return min(self.max_requests, max(self.min_requests, math.ceil(rate * self.seconds)))


def prefix(w: Workload, n: int) -> Workload:
    """The first n requests of a workload."""
    if n >= len(w):
        return w
    ids = None if w.prefix_ids is None else w.prefix_ids[:n]
    arrival = None if w.arrival is None else w.arrival[:n]
    return replace(w, prompt_len=w.prompt_len[:n], output_len=w.output_len[:n], arrival=arrival, prefix_ids=ids)


def at_rate(base: Workload, rate: float, length: ProbeLength | None = None) -> Workload:
    """The first requests of the base sample (built at 1 request/s) with arrivals compressed to `rate` req/s."""
    w = prefix(base, length.requests(rate)) if length else base
    return replace(w, arrival=w.arrival / rate, source={**w.source, "qps": rate})


def flatten_summary(summary: dict) -> dict:
    out: dict = {}
    for metric, dist in (summary.get("latency_s") or {}).items():
        for stat, value in dist.items():
            out[f"{metric}_{stat}_s"] = value
    out.update(summary.get("throughput") or {})
    req = summary["requests"]
    out.update(completed=req["completed"], rejected=req["rejected"], preemptions=req["preemptions"])
    eng = summary.get("engine") or {}
    for key in ("kv_usage_peak", "kv_usage_mean", "running_mean", "running_peak", "waiting_peak", "steps"):
        out[key] = eng.get(key)
    out["prefix_hit_rate"] = (summary.get("prefix_cache") or {}).get("hit_rate")
    return out


def run_probe(cfg: RunConfig, workload: Workload, rate: float) -> Probe:
    from servesim.simulate import run_simulation  # workers import the simulator only when they run

    result = run_simulation(replace(cfg, slo_ttft=None, slo_tpot=None), workload=workload)
    lat = request_latencies(result.requests)
    return Probe(rate, flatten_summary(result.summary), lat["ttft"], lat["tpot"])
