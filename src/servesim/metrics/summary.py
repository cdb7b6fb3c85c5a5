"""The numbers a serving engineer asks for: latency percentiles, throughput, SLO goodput, KV pressure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.metrics.latency import distribution, itl_weighted, request_latencies, weighted_distribution
from servesim.metrics.steps import step_pass


@dataclass(frozen=True)
class SLO:
    ttft: float | None = None  # seconds
    tpot: float | None = None  # seconds

    def met(self, lat: dict[str, np.ndarray]) -> np.ndarray:
        ok = ~np.isnan(lat["e2e"])  # rejected requests never meet an SLO
        if self.ttft is not None:
            ok &= lat["ttft"] <= self.ttft
        if self.tpot is not None:
            ok &= np.isnan(lat["tpot"]) | (lat["tpot"] <= self.tpot)  # one-token answers have no TPOT
        return ok


def summarize(reqs: dict[str, np.ndarray], steps: dict[str, np.ndarray], emits, slo: SLO,
              kv_blocks_usable: int | np.ndarray) -> dict:
    """`steps`: a dict of step columns or a StepTable. `kv_blocks_usable`: the replica's usable KV blocks, or
    one value per step when replicas differ (a StepTable knows its replicas')."""
    done = reqs["finish_reason"] != 3
    completed = int(done.sum())
    out: dict = {
        "requests": {
            "total": int(len(done)),
            "completed": completed,
            "rejected": int((~done).sum()),
            "preemptions": int(reqs["preemptions"].sum()),
            "preempted_requests": int((reqs["preemptions"] > 0).sum()),
        }
    }
    if completed == 0:
        out["latency_s"] = {}
        out["throughput"] = {}
        return out
    start = float(reqs["arrival"][done].min())
    end = float(reqs["finished"][done].max())
    duration = end - start
    # The ITL pass first (its buffers are the largest arrays here); it computes the step statistics on the way.
    stats = step_pass(steps, kv_blocks_usable)
    itl = weighted_distribution(*itl_weighted(steps, emits, stats))
    lat = request_latencies(reqs)
    out["latency_s"] = {
        "ttft": distribution(lat["ttft"]),
        "tpot": distribution(lat["tpot"]),
        "itl": itl,
        "e2e": distribution(lat["e2e"]),
        "queue": distribution(lat["queue"]),
    }
    prompt_tokens = int(reqs["prompt_len"][done].sum())
    output_tokens = int(reqs["output_len"][done].sum())
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: None)
    out["throughput"] = {
        "duration_s": duration,
        "requests_per_s": per_s(completed),
        "input_tokens_per_s": per_s(prompt_tokens),
        "output_tokens_per_s": per_s(output_tokens),
        "total_tokens_per_s": per_s(prompt_tokens + output_tokens),
    }
    met = slo.met(lat)
    out["slo"] = {
        "ttft_s": slo.ttft,
        "tpot_s": slo.tpot,
        "attainment": float(met.mean()),
        "goodput_requests_per_s": per_s(int(met.sum())),
    }
    out["prefix_cache"] = {
        "hit_tokens": int(reqs["hit_tokens"].sum()),
        "hit_rate": float(reqs["cached_tokens"][done].sum() / max(1, prompt_tokens)),
    }
    out["engine"] = (stats.finish() if stats is not None else steps.stats).engine
    return out
