"""Results of a cluster run: one request table, one step log and one emission log over all replicas, and the
per-replica, per-client and TTFT-breakdown summaries.

Step indices of replica k are offset by the steps of replicas before it, so every emission range still
points at consecutive steps of one replica and the single-replica latency code applies unchanged. In a
disaggregated cluster the prefill replica's sampled token is discarded (the decode replica samples the
first token the client sees, as in vLLM's P/D connectors), so only decode replicas' emissions count.
"""

from __future__ import annotations

import numpy as np

from servesim.metrics.latency import distribution, request_latencies
from servesim.metrics.steps import StepTable, step_statistics

REJECTED = 3


def _step_table(replicas) -> StepTable:
    return StepTable([(r.index, r.engine.steps, r.engine.kv.num_usable) for r in replicas])


def _concat_emits(replicas, offsets: list[int]):
    rids, los, his = [], [], []
    for r, off in zip(replicas, offsets):
        rid, lo, hi = r.engine.emits.as_numpy()
        rids.append(rid)
        los.append(lo + off)
        his.append(hi + off)
    return np.concatenate(rids), np.concatenate(los), np.concatenate(his)


def combine_colocated(table, replicas, run):
    requests = table.outputs_as_numpy()
    requests["replica"] = np.asarray(run.routed, dtype=np.int64)
    steps = _step_table(replicas)
    return requests, steps, _concat_emits(replicas, steps.offsets)


def combine_disaggregated(ptable, dtable, prefill, decode, run):
    p, d = ptable.outputs_as_numpy(), dtable.outputs_as_numpy()
    rejected = p["finish_reason"] == REJECTED
    if run.rejected_upfront:
        rejected[np.asarray(run.rejected_upfront)] = True
    requests = {
        "prompt_len": d["prompt_len"],
        "output_len": d["output_len"],
        "max_tokens": d["max_tokens"],
        "arrival": p["arrival"],
        "first_scheduled": p["first_scheduled"],
        "first_token": np.where(rejected, -1.0, d["first_token"]),
        "finished": np.where(rejected, p["arrival"], d["finished"]),
        "preemptions": p["preemptions"] + d["preemptions"],
        "cached_tokens": p["cached_tokens"],
        "hit_tokens": p["hit_tokens"],
        "finish_reason": np.where(rejected, REJECTED, d["finish_reason"]).astype(np.uint8),
        "replica": np.asarray(run.routed, dtype=np.int64),
        "decode_replica": np.where(rejected, -1, np.asarray(run.decoded_on, dtype=np.int64) + len(prefill)),
        "prefill_done": np.asarray(run.prefill_done, dtype=np.float64),
        "kv_arrived": np.where(rejected, np.nan, d["arrival"]),
        "decode_admitted": np.where(rejected, np.nan, d["first_scheduled"]),
    }
    steps = _step_table(prefill + decode)
    emits = _concat_emits(decode, steps.offsets[len(prefill):])
    return requests, steps, emits


def ttft_parts(reqs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A disaggregated request's TTFT = prefill queue + prefill + KV transfer + decode queue + first decode step."""
    done = reqs["finish_reason"] != REJECTED
    nan = np.full(len(done), np.nan)

    def part(later, earlier):
        return np.where(done, reqs[later] - reqs[earlier], nan)

    return {
        "prefill_queue": part("first_scheduled", "arrival"),
        "prefill": part("prefill_done", "first_scheduled"),
        "transfer": part("kv_arrived", "prefill_done"),
        "decode_queue": part("decode_admitted", "kv_arrived"),
        "first_decode_step": part("first_token", "decode_admitted"),
    }


def _replica_summary(r, reqs, lat, stats: dict, duration: float) -> dict:
    key = "decode_replica" if r.role == "decode" else "replica"
    mine = reqs[key] == r.index
    done = mine & (reqs["finish_reason"] != REJECTED)
    busy = stats["busy_s"]
    prompt_tokens = int(reqs["prompt_len"][done].sum())
    out = {
        **r.describe(),
        "requests": int(mine.sum()),
        "completed": int(done.sum()),
        "ttft_p50_s": distribution(lat["ttft"][mine])["p50"],
        "ttft_p99_s": distribution(lat["ttft"][mine])["p99"],
        "tpot_p50_s": distribution(lat["tpot"][mine])["p50"],
        "output_tokens_per_s": float(reqs["output_len"][done].sum() / duration) if duration > 0 else None,
        "busy_fraction": busy / duration if duration > 0 else None,
        "steps": stats["steps"],
        "kv_usage_peak": stats["kv_usage_peak"],
        "kv_usage_mean": stats["kv_usage_mean"],
    }
    if r.role != "decode":
        out["prefix_hit_rate"] = float(reqs["cached_tokens"][done].sum() / max(1, prompt_tokens))
        out["preemptions"] = int(reqs["preemptions"][mine].sum())
    return out


def cluster_summary(reqs, steps, replicas, pools, gpus: int, summary: dict, client_names=None) -> dict:
    out: dict = {}
    tp = summary.get("throughput") or {}
    duration = tp.get("duration_s") or 0.0
    per_gpu = (lambda x: None if x is None else x / gpus)
    out["cluster"] = {
        "gpus": gpus,
        "replicas": len(replicas),
        "pools": [p.label() + ("" if p.role == "colocated" else f" ({p.role})") for p in pools],
        "requests_per_s_per_gpu": per_gpu(tp.get("requests_per_s")),
        "output_tokens_per_s_per_gpu": per_gpu(tp.get("output_tokens_per_s")),
        "goodput_requests_per_s_per_gpu": per_gpu((summary.get("slo") or {}).get("goodput_requests_per_s")),
    }
    lat = request_latencies(reqs)
    if len(replicas) > 1:
        stats = step_statistics(steps).replicas
        out["replicas"] = [_replica_summary(r, reqs, lat, stats[r.index], duration) for r in replicas]
    if "prefill_done" in reqs:
        out["ttft_breakdown_s"] = {k: distribution(v) for k, v in ttft_parts(reqs).items()}
    if client_names is not None and "client" in reqs:
        out["clients"] = client_summary(reqs, lat, client_names, summary)
    return out


def client_summary(reqs, lat, names, summary: dict) -> dict:
    done = reqs["finish_reason"] != REJECTED
    total_out = max(1, int(reqs["output_len"][done].sum()))
    out = {}
    for i, name in enumerate(names):
        mine = reqs["client"] == i
        ttft = distribution(lat["ttft"][mine])
        out[name] = {
            "requests": int(mine.sum()),
            "completed": int((mine & done).sum()),
            "ttft_p50_s": ttft["p50"],
            "ttft_p99_s": ttft["p99"],
            "e2e_p99_s": distribution(lat["e2e"][mine])["p99"],
            "output_token_share": float(reqs["output_len"][mine & done].sum() / total_out),
        }
    return out

