"""A plan as data: plan.json (everything), plan.parquet (one row per candidate), probes.parquet (one row per
simulation). docs/planner.md documents every field. Same request and seed give identical bytes: nothing
about the machine, the executor, the cache or the wall clock goes in."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from servesim import __version__
from servesim.plan.pareto import frontier
from servesim.plan.probe import Probe
from servesim.plan.search import RANKED, STATUSES, PlanResult, Point
from servesim.plan.space import POOL_FIELDS
from servesim.plan.vllm_command import deployment

SCHEMA_VERSION = 2  # 2: disaggregated candidates, pool columns, whole-deployment operating points
REPLICA_MODEL = ("capacity probes simulate one replica (one xPyD unit when disaggregated) at target/replicas req/s "
                 "with the traffic's own burstiness, as if the load balancer split it evenly; the top deployments' "
                 "operating points and the winner's verification simulate all their replicas behind the router at "
                 "the full target rate")
PROBE_METRICS = ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "itl_p90_s",
                 "e2e_p50_s", "e2e_p90_s", "queue_p90_s", "requests_per_s", "output_tokens_per_s",
                 "total_tokens_per_s", "duration_s", "completed", "rejected", "preemptions", "kv_usage_peak",
                 "running_mean", "prefix_hit_rate")


def jsonable(x):
    """JSON-safe: NaN and inf become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def _probe_summary(probe: Probe | None, res: PlanResult, gpus_per_replica: int, replicas: int = 1) -> dict | None:
    """A probe's figures; `replicas` is how many replicas it simulated (rates and throughputs are theirs)."""
    if probe is None:
        return None
    slo = res.request.slo
    m = probe.metrics
    out = {"rate": probe.rate, "simulated_replicas": replicas, "attainment": probe.attainment(slo),
           "goodput_requests_per_s": probe.goodput(slo)}
    out.update({k: m.get(k) for k in PROBE_METRICS})
    tput = m.get("output_tokens_per_s")
    out["output_tokens_per_s_per_gpu"] = None if tput is None else tput / (gpus_per_replica * replicas)
    return out


def candidate_record(p: Point, res: PlanResult, rank: int | None) -> dict:
    c, a = p.candidate, p.assessment
    rec = {**c.as_dict(), "status": p.status, "reason": p.reason, "rank": rank, "price_per_gpu_hour": p.price,
           "price_per_replica_hour": p.replica_price, "engine": a.engine or None, "memory": a.memory or None}
    rec["bounds"] = a.summary(res.request.slo) if a.status == "ok" else None
    rec["lb_replicas"] = p.lb_replicas
    cap = p.capacity
    rec["capacity_requests_per_s"] = cap.rate if cap else None
    rec["capacity_failed_at_requests_per_s"] = cap.failed_rate if cap else None
    rec["replicas"] = p.replicas
    rec["gpus"] = p.gpus
    rec["cost_per_hour"] = p.cost_per_hour
    good = cap.rate if cap and cap.rate > 0 else None
    rec["goodput_per_gpu_requests_per_s"] = None if good is None else good / c.gpus_per_replica
    rec["requests_per_dollar"] = None if good is None else good * 3600 / p.replica_price
    rec["at_capacity"] = _probe_summary(p.capacity_probe, res, c.gpus_per_replica)
    rec["operating"] = _probe_summary(p.operating, res, c.gpus_per_replica, p.simulated_replicas or 1)
    rec["verification"] = _probe_summary(p.verification, res, c.gpus_per_replica, p.simulated_replicas or 1)
    rec["probes"] = [{"grid_index": k, "rate": r, "passed": ok, "attainment": p.probes[r].attainment(res.request.slo)}
                     for k, r, ok in (cap.probes if cap else [])]
    return rec


def _probe_row(p: Point, probe: Probe, kind: str, sample: str, passed: bool, res: PlanResult,
               simulated: int = 1) -> dict:
    """`simulated` replicas at the probe's rate; a one-replica probe stands for enough replicas that each
    sees at most its rate."""
    req, c = res.request, p.candidate
    replicas = simulated if simulated > 1 else math.ceil(req.qps / probe.rate * (1 - 1e-12))
    d = c.as_dict()
    row = {"candidate_id": p.id, "mode": c.mode, **{k: d[k] for k in ("gpu", "tp", "pp", "dtype")},
           "max_num_seqs": p.assessment.engine.get("max_num_seqs"),
           "max_num_batched_tokens": p.assessment.engine.get("max_num_batched_tokens"),
           "long_prefill_token_threshold": c.long_prefill_token_threshold,
           **{k: d[k] for k in POOL_FIELDS}, "gpus_per_replica": c.gpus_per_replica,
           "kind": kind, "sample": sample, "passed": passed, "replicas_for_target": replicas,
           "gpus_for_target": replicas * c.gpus_per_replica,
           "cost_per_hour_for_target": replicas * p.replica_price}
    row.update(_probe_summary(probe, res, c.gpus_per_replica, simulated))
    tpot = probe.metrics.get("tpot_p50_s")
    row["tokens_per_s_per_user"] = 1.0 / tpot if tpot else None
    return row


def probe_rows(res: PlanResult) -> list[dict]:
    """Every simulation the plan used, with the deployment each one stands for (enough replicas that each
    sees at most the probe's rate)."""
    slo, req = res.request.slo, res.request
    rows = []
    for p in res.points:
        searched = {r: ok for _, r, ok in (p.capacity.probes if p.capacity else [])}
        for rate, ok in sorted(searched.items()):
            rows.append(_probe_row(p, p.probes[rate], "capacity-search", "probe", ok, res))
        n = p.simulated_replicas or 1
        if p.operating is not None and (n > 1 or p.operating.rate not in searched):
            rows.append(_probe_row(p, p.operating, "operating", "probe",
                                   p.operating.attainment(slo) >= req.attainment, res, n))
        if p.verification is not None:
            rows.append(_probe_row(p, p.verification, "verification", "verify",
                                   p.verification.attainment(slo) >= req.attainment, res, n))
    for row in rows:
        row["pareto_cost_ttft"] = False
        row["pareto_throughput_speed"] = False
    feasible = [i for i, r in enumerate(rows) if r["passed"] and r["gpus_for_target"] <= req.max_gpus]
    for j in frontier([rows[i]["cost_per_hour_for_target"] for i in feasible], [rows[i]["ttft_p90_s"] for i in feasible]):
        rows[feasible[j]]["pareto_cost_ttft"] = True
    for i in frontier([r["output_tokens_per_s_per_gpu"] for r in rows], [r["tokens_per_s_per_user"] for r in rows],
                      minimize_x=False, minimize_y=False):
        rows[i]["pareto_throughput_speed"] = True
    return rows


def closest(res: PlanResult, n: int = 3) -> list[dict]:
    """When nothing meets the target: the candidates that come nearest, and by how much they miss."""
    req = res.request
    out = []
    for p in res.points:
        c = p.candidate
        fit = req.max_gpus // c.gpus_per_replica
        if p.status == "over-max-gpus":
            reach = p.capacity.rate * fit
            how = f"serves {reach:.2f} req/s within the SLOs on {fit * c.gpus_per_replica} GPUs ({fit} replicas)"
        elif p.status == "pruned-gpus" and fit > 0:
            reach = p.assessment.ub_rps * fit
            how = f"at most {reach:.2f} req/s (throughput bound) on {fit * c.gpus_per_replica} GPUs ({fit} replicas)"
        elif p.status in ("pruned-slo", "no-capacity"):
            reach, how = 0.0, p.reason
        else:
            continue
        short = 1.0 - reach / req.qps
        out.append({"id": p.id, "status": p.status, "reachable_requests_per_s": reach, "shortfall": short,
                    "detail": how, "attainment_bound": p.assessment.attainment_bound(req.slo)})
    out.sort(key=lambda d: (-d["reachable_requests_per_s"], -d["attainment_bound"], d["id"]))
    return out[:n]


def plan_document(res: PlanResult) -> dict:
    req = res.request
    ranks = {p.id: i + 1 for i, p in enumerate(res.ranked)}
    order = list(res.ranked) + sorted((p for p in res.points if p.status != RANKED), key=lambda p: p.id)
    counts: dict[str, int] = {}
    for p in res.points:
        counts[p.status] = counts.get(p.status, 0) + 1
    doc = {
        "schema_version": SCHEMA_VERSION,
        "servesim_version": __version__,
        "seed": req.base.seed,
        "request": {"model": res.model, **req.settings()},
        "config": req.base.to_dict(),
        "workload": res.workload,
        "max_model_len": res.max_model_len,
        "prices": req.prices.as_dict(),
        "replica_model": REPLICA_MODEL,
        "interrupted": res.interrupted,
        "statuses": STATUSES,
        "counts": dict(sorted(counts.items())),
        "left_out": {"disaggregated_units_with_a_pool_that_does_not_fit": res.left_out},
        "winner": None,
        "closest": [],
        "candidates": [candidate_record(p, res, ranks.get(p.id)) for p in order],
    }
    w = res.winner
    if w is not None:
        n = w.simulated_replicas or 1
        doc["winner"] = {
            "id": w.id, "mode": w.candidate.mode, "replicas": w.replicas, "gpus": w.gpus,
            "cost_per_hour": w.cost_per_hour, "capacity_requests_per_s": w.capacity.rate,
            **deployment(w.candidate, w.config, res.model["hf_id"] or res.model["name"], w.assessment.engine,
                         w.replicas),
            "operating": _probe_summary(w.operating, res, w.candidate.gpus_per_replica, n),
            "verification": _probe_summary(w.verification, res, w.candidate.gpus_per_replica, n),
            "verified": w.verification is not None and w.verification.attainment(req.slo) >= req.attainment,
        }
    else:
        doc["closest"] = closest(res)
    rows = probe_rows(res)
    doc["pareto"] = {
        "cost_vs_ttft_p90": [{k: r[k] for k in ("candidate_id", "rate", "replicas_for_target", "cost_per_hour_for_target", "ttft_p90_s")}
                             for r in sorted((r for r in rows if r["pareto_cost_ttft"]), key=lambda r: r["cost_per_hour_for_target"])],
        "throughput_vs_user_speed": [{k: r[k] for k in ("candidate_id", "rate", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user")}
                                     for r in sorted((r for r in rows if r["pareto_throughput_speed"]), key=lambda r: -r["output_tokens_per_s_per_gpu"])],
    }
    return jsonable(doc), rows


_NESTED = ("engine", "memory", "bounds", "at_capacity", "operating", "verification")


def _flat(rec: dict, prefix: str = "") -> dict:
    """Nested sections become dotted columns (`at_capacity.ttft_p90_s`); a missing section, nulls."""
    out = {}
    for k, v in rec.items():
        if k == "probes" or (k in _NESTED and v is None):
            continue
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _table(rows: list[dict]) -> pa.Table:
    columns: dict[str, list] = {}
    for row in rows:
        for k in row:
            columns.setdefault(k, [])
    return pa.table({k: [r.get(k) for r in rows] for k in columns}) if rows else pa.table({})


def write_plan(res: PlanResult, out_dir: str | Path) -> tuple[dict, list[dict]]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc, rows = plan_document(res)
    (out_dir / "plan.json").write_text(json.dumps(doc, indent=1) + "\n")
    pq.write_table(_table([_flat(c) for c in doc["candidates"]]), out_dir / "plan.parquet")
    pq.write_table(_table(jsonable(rows)), out_dir / "probes.parquet")
    return doc, rows
