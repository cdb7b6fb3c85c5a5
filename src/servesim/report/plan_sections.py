"""Report sections for the planner's outputs: a `plan` (plan.json + probes.parquet) and a `sweep` (sweep.json).

Plan: the winner and its `vllm serve` line (or the nearest misses), the ranked deployments, the two Pareto
frontiers the planner computes (cost vs p90 TTFT; output tokens/s per GPU vs tokens/s per user) over every
probe, and the throughput-latency curves of the top candidates from their capacity-search probes.
Sweep: the grid as a table and throughput-latency curves, one per combination of the other grid settings.
Field meanings: docs/planner.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Callable

import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
from plotly.subplots import make_subplots

from servesim.errors import ServesimError
from servesim.plan.pareto import frontier
from servesim.report.charts import Chart, color, style
from servesim.report.html import Section
from servesim.report.plan_report import replica_label
from servesim.report.tables import html_table, td

PLAN_SCHEMA = 2
TOP_CURVES = 5
RANKED_ROWS = 15
SYMBOLS = {True: "circle", False: "x-thin-open"}


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ServesimError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict):
        raise ServesimError(f"{path}: expected a JSON object")
    return doc


def _need(doc: dict, keys: tuple[str, ...], path: Path) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ServesimError(f"{path}: missing {', '.join(missing)}; it was written by servesim "
                            f"{doc.get('servesim_version', '?')}: re-run it with this version")


@dataclass
class Plan:
    name: str
    path: Path
    doc: dict
    probes: list[dict]  # probes.parquet rows

    def description(self) -> str:
        req = self.doc["request"]
        return f"plan for {req['model']['name']} at {req['qps']:g} req/s"


@dataclass
class Sweep:
    name: str
    path: Path
    doc: dict

    def description(self) -> str:
        grid = " x ".join(f"{k} ({len(v)})" for k, v in self.doc["grid"].items())
        return f"sweep over {grid}"


def load_plans(paths: list[Path]) -> list[Plan]:
    out = []
    for path in paths:
        doc = _read_json(path / "plan.json")
        if doc.get("schema_version") != PLAN_SCHEMA:
            raise ServesimError(f"{path / 'plan.json'}: plan schema {doc.get('schema_version')!r} (servesim "
                                f"{doc.get('servesim_version', '?')}); this servesim reads schema {PLAN_SCHEMA}: "
                                "re-run the plan with it")
        _need(doc, ("request", "candidates", "winner", "closest", "counts"), path / "plan.json")
        if not (path / "probes.parquet").exists():
            raise ServesimError(f"{path}: missing probes.parquet (written with plan.json by `servesim plan -o`)")
        try:
            probes = pq.read_table(path / "probes.parquet").to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise ServesimError(f"{path / 'probes.parquet'}: not a readable Parquet file ({e})") from None
        out.append(Plan(path.name, path, doc, probes))
    return out


def load_sweeps(paths: list[Path]) -> list[Sweep]:
    out = []
    for path in paths:
        doc = _read_json(path / "sweep.json")
        _need(doc, ("grid", "points", "config"), path / "sweep.json")
        out.append(Sweep(path.name, path, doc))
    return out


def _ms(x) -> str:
    return "-" if x is None else f"{x * 1e3:.0f}"


def _num(x, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def _slo_text(req: dict) -> str:
    parts = [f"{k} <= {req[f'slo_{k.lower()}_s'] * 1e3:g} ms" for k in ("TTFT", "TPOT")
             if req.get(f"slo_{k.lower()}_s") is not None]
    return " and ".join(parts)


def _winner_html(plan: Plan) -> str:
    doc, req = plan.doc, plan.doc["request"]
    target = (f"<p>Serve <b>{req['qps']:g} req/s</b> of {escape(doc['workload'].get('name', '?'))} with "
              f"<b>{escape(req['model']['name'])}</b>, {req['attainment'] * 100:g}% of requests within "
              f"{escape(_slo_text(req))}, at most {req['max_gpus']} GPUs.</p>")
    counts = ", ".join(f"{n} {escape(s)}" for s, n in doc["counts"].items())
    w = doc["winner"]
    if w is None:
        rows = [[td(escape(c["id"]), "name"), td(_num(c["reachable_requests_per_s"])), td(f"{c['shortfall']:.0%}"),
                 td(escape(c["detail"]), "config")] for c in doc["closest"]]
        miss = html_table(["candidate", "reaches req/s", "short by", "why"], rows, "closest")
        return target + f'<p class="note">No deployment meets the target. Closest:</p>{miss}<p>{counts}</p>'
    v = w.get("verification") or {}
    n = v.get("simulated_replicas") or 1
    where = f"{_num(v.get('rate'))} req/s " + (f"over all {n} replicas" if n > 1 else "on one replica")
    verified = ("" if w.get("verified", True) else
                '<p class="note">The longer verification run missed the attainment target: the traffic changes '
                "over longer spans than the capacity probes, or the router splits it less evenly than the capacity "
                "search assumes; raise --probe-seconds (or try another --router) before trusting this plan.</p>")
    return (target + f'<table class="winner"><tbody>'
            f'<tr><td class="name">cheapest</td><td class="config">{w["replicas"]} x {escape(w["id"])} = '
            f'{w["gpus"]} GPUs, ${w["cost_per_hour"]:.2f}/hour</td></tr>'
            f'<tr><td class="name">capacity per replica</td><td class="config">'
            f'{w["capacity_requests_per_s"]:.2f} req/s</td></tr>'
            f'<tr><td class="name">verification</td><td class="config">{_num(v.get("attainment"), "{:.1%}")} '
            f'within the SLOs at {where}</td></tr></tbody></table>'
            f"{verified}<p>{escape(w['deploy'])}:</p><pre>{escape(w['vllm_serve'])}</pre>"
            f'<p class="explain">{escape(doc.get("replica_model", ""))}. Candidates: {counts}.</p>')


def _ranked_html(plan: Plan) -> str:
    header = ["#", "candidate", "replica", "replicas", "GPUs", "$/hour", "capacity req/s", "req/s per GPU",
              "requests per $", "TTFT p90 ms", "TPOT p90 ms"]
    rows = []
    for c in plan.doc["candidates"]:
        if c.get("rank") is None or c["rank"] > RANKED_ROWS:
            continue
        at = c.get("operating") or c.get("at_capacity") or {}
        rows.append([td(str(c["rank"])), td(escape(c["id"]), "name"), td(escape(replica_label(c))),
                     td(str(c["replicas"])), td(str(c["gpus"])), td(_num(c["cost_per_hour"])),
                     td(_num(c["capacity_requests_per_s"])), td(_num(c["goodput_per_gpu_requests_per_s"])),
                     td(_num(c["requests_per_dollar"], "{:,.0f}")), td(_ms(at.get("ttft_p90_s"))),
                     td(_ms(at.get("tpot_p90_s")))])
    return f'<div class="table-wrap">{html_table(header, rows, "ranked")}</div>'


def _group(r: dict) -> str:
    return r["gpu"] + (" P/D" if r.get("mode") == "disaggregated" else "")


def _by_gpu(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Probes by GPU type, disaggregated units apart from co-located replicas."""
    gpus = sorted({_group(r) for r in rows})
    return [(g, [r for r in rows if _group(r) == g]) for g in gpus]


def _hover(rows: list[dict]) -> list[str]:
    return [f"{r['candidate_id']} at {r['rate']:.2f} req/s ({r['kind']}, {'met' if r['passed'] else 'missed'} "
            f"the SLOs)" for r in rows]


def cost_frontier(index: int, plan: Plan) -> Chart | None:
    req = plan.doc["request"]
    feasible = [r for r in plan.probes if r["passed"] and r["gpus_for_target"] <= req["max_gpus"]
                and r["ttft_p90_s"] is not None]
    if not feasible:
        return None
    fig = go.Figure()
    for k, (gpu, rows) in enumerate(_by_gpu(feasible)):
        fig.add_trace(go.Scatter(x=[r["cost_per_hour_for_target"] for r in rows],
                                 y=[r["ttft_p90_s"] * 1e3 for r in rows], mode="markers", name=gpu,
                                 marker=dict(color=color(k), size=7, opacity=0.7), text=_hover(rows),
                                 hovertemplate="%{text}<br>$%{x:.2f}/hour, TTFT p90 %{y:.0f} ms<extra></extra>"))
    edge = frontier([r["cost_per_hour_for_target"] for r in feasible], [r["ttft_p90_s"] for r in feasible])
    if edge:
        pts = [feasible[i] for i in edge]
        fig.add_trace(go.Scatter(x=[r["cost_per_hour_for_target"] for r in pts], y=[r["ttft_p90_s"] * 1e3 for r in pts],
                                 mode="lines", name="Pareto frontier", line=dict(color="#333", dash="dash", width=1.2),
                                 line_shape="hv", hoverinfo="skip"))
    w = plan.doc["winner"]
    if w is not None and (w.get("operating") or {}).get("ttft_p90_s") is not None:
        fig.add_trace(go.Scatter(x=[w["cost_per_hour"]], y=[w["operating"]["ttft_p90_s"] * 1e3], mode="markers",
                                 name="cheapest", marker=dict(symbol="star", size=16, color="#f2b01e",
                                                              line=dict(color="#333", width=1)),
                                 hovertemplate=f"{escape(w['id'])}: ${w['cost_per_hour']:.2f}/hour<extra></extra>"))
    if req.get("slo_ttft_s") is not None:
        fig.add_hline(y=req["slo_ttft_s"] * 1e3, line=dict(color="#444", dash="dot", width=1),
                      annotation_text=f"TTFT SLO {req['slo_ttft_s'] * 1e3:g} ms", annotation_position="top left")
    fig.update_xaxes(title_text=f"cost of serving {req['qps']:g} req/s ($/hour)", rangemode="tozero")
    fig.update_yaxes(title_text="TTFT p90 (ms)", rangemode="tozero")
    return Chart(f"plan-cost-frontier-{index}", f"Cost vs latency: {plan.name}",
                 "Each point is one simulated rate of one candidate that met the SLOs, priced as the replicas it "
                 f"would take to serve {req['qps']:g} req/s. Lower left is better; the dashed line joins the points "
                 "no other point beats on both cost and p90 TTFT; the star is the deployment the planner chose "
                 "(at its operating rate).", style(fig, 460))


def speed_frontier(index: int, plan: Plan) -> Chart:
    req = plan.doc["request"]
    rows_all = [r for r in plan.probes if r["tokens_per_s_per_user"] is not None
                and r["output_tokens_per_s_per_gpu"] is not None]
    fig = go.Figure()
    for k, (gpu, rows) in enumerate(_by_gpu(rows_all)):
        fig.add_trace(go.Scatter(x=[r["tokens_per_s_per_user"] for r in rows],
                                 y=[r["output_tokens_per_s_per_gpu"] for r in rows], mode="markers", name=gpu,
                                 marker=dict(color=color(k), size=7, opacity=0.75,
                                             symbol=[SYMBOLS[bool(r["passed"])] for r in rows]),
                                 text=_hover(rows), hovertemplate="%{text}<br>%{x:.1f} tokens/s per user, "
                                                                  "%{y:,.0f} tokens/s per GPU<extra></extra>"))
    edge = frontier([r["tokens_per_s_per_user"] for r in rows_all],
                    [r["output_tokens_per_s_per_gpu"] for r in rows_all], minimize_x=False, minimize_y=False)
    if edge:
        pts = [rows_all[i] for i in edge]
        fig.add_trace(go.Scatter(x=[r["tokens_per_s_per_user"] for r in pts],
                                 y=[r["output_tokens_per_s_per_gpu"] for r in pts], mode="lines",
                                 name="Pareto frontier", line=dict(color="#333", dash="dash", width=1.2),
                                 hoverinfo="skip"))
    if req.get("slo_tpot_s"):
        fig.add_vline(x=1.0 / req["slo_tpot_s"], line=dict(color="#444", dash="dot", width=1),
                      annotation_text=f"TPOT SLO {req['slo_tpot_s'] * 1e3:g} ms", annotation_position="top right")
    fig.update_xaxes(title_text="tokens/s per user (1 / median TPOT)", rangemode="tozero")
    fig.update_yaxes(title_text="output tokens/s per GPU", rangemode="tozero")
    return Chart(f"plan-speed-frontier-{index}", f"Throughput vs interactivity: {plan.name}",
                 "Every probe of every candidate: what a GPU produces against how fast each user sees tokens. "
                 "Batching more raises the first and lowers the second; the dashed line is the best trade-off "
                 "on offer. Circles met the SLOs, crosses missed them.", style(fig, 460))


def top_candidates(plan: Plan) -> list[str]:
    ranked = sorted((c for c in plan.doc["candidates"] if c.get("rank") is not None), key=lambda c: c["rank"])
    if ranked:
        return [c["id"] for c in ranked[:TOP_CURVES]]
    with_capacity = sorted((c for c in plan.doc["candidates"] if c.get("capacity_requests_per_s")),
                           key=lambda c: (-c["capacity_requests_per_s"], c["id"]))
    return [c["id"] for c in with_capacity[:TOP_CURVES]]


def latency_curves(index: int, plan: Plan) -> Chart | None:
    req = plan.doc["request"]
    ids = top_candidates(plan)
    if not ids:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=["TTFT p90", "TPOT p90"], horizontal_spacing=0.08)
    for k, cid in enumerate(ids):
        rows = sorted((r for r in plan.probes if r["candidate_id"] == cid and r["sample"] == "probe"
                       and (r.get("simulated_replicas") or 1) == 1), key=lambda r: r["rate"])
        for col, key in ((1, "ttft_p90_s"), (2, "tpot_p90_s")):
            fig.add_trace(go.Scatter(x=[r["rate"] for r in rows],
                                     y=[None if r[key] is None else r[key] * 1e3 for r in rows],
                                     mode="lines+markers", name=cid, legendgroup=cid, showlegend=col == 1,
                                     line=dict(color=color(k), width=1.6),
                                     marker=dict(symbol=[SYMBOLS[bool(r["passed"])] for r in rows], size=8),
                                     text=_hover(rows), hovertemplate="%{text}<br>%{y:.0f} ms<extra></extra>"),
                          row=1, col=col)
    for col, key, label in ((1, "slo_ttft_s", "TTFT"), (2, "slo_tpot_s", "TPOT")):
        if req.get(key) is not None:
            fig.add_hline(y=req[key] * 1e3, row=1, col=col, line=dict(color="#444", dash="dot", width=1),
                          annotation_text=f"SLO {req[key] * 1e3:g} ms", annotation_position="top left")
        fig.update_xaxes(title_text="offered load per replica (req/s)", rangemode="tozero", row=1, col=col)
        fig.update_yaxes(title_text=f"{label} p90 (ms)", rangemode="tozero", row=1, col=col)
    return Chart(f"plan-curves-{index}", f"Throughput-latency curves: {plan.name}",
                 f"The top {len(ids)} candidates' capacity-search probes: p90 latency as the offered load rises. "
                 "Circles met the attainment target, crosses missed it; a candidate's capacity is its last "
                 "circle before the curve turns up.", style(fig, 440))


def plan_sections(plans: list[Plan], options, progress: Callable[[], None]) -> tuple[list[Section], list[str]]:
    sections = []
    for i, plan in enumerate(plans):
        sections.append(Section(f"plan-{i}", f"Plan: {plan.name}", html=_winner_html(plan)))
        if any(c.get("rank") for c in plan.doc["candidates"]):
            sections.append(Section(f"plan-ranked-{i}", f"Ranked deployments: {plan.name}",
                                    f"The cheapest deployments meeting the SLOs, at most {RANKED_ROWS}; latencies "
                                    "of the whole deployment at the target rate where simulated, else of one "
                                    "replica at capacity.",
                                    html=_ranked_html(plan)))
        for build in (cost_frontier, speed_frontier, latency_curves):
            chart = build(i, plan)
            if chart is not None:
                sections.append(Section.of_chart(chart))
        progress()
    return sections, []


# --- sweeps -------------------------------------------------------------------------------------------------

LOAD_SETTINGS = ("qps", "concurrency")  # the grid setting a throughput-latency curve runs along, if swept


def _curve_setting(grid: dict) -> str:
    return next((k for k in LOAD_SETTINGS if k in grid), next(iter(grid)))


def _sweep_table(sweep: Sweep) -> str:
    grid = list(sweep.doc["grid"])
    cols = (("requests_per_s", "req/s", "{:.2f}", 1), ("output_tokens_per_s", "output tokens/s", "{:,.0f}", 1),
            ("ttft_p90_s", "TTFT p90 ms", "{:.0f}", 1e3), ("tpot_p90_s", "TPOT p90 ms", "{:.1f}", 1e3),
            ("e2e_p90_s", "E2E p90 ms", "{:.0f}", 1e3), ("preemptions", "preemptions", "{:,}", 1),
            ("slo_attainment", "SLO met", "{:.1%}", 1), ("goodput_requests_per_s", "goodput req/s", "{:.2f}", 1))
    shown = [c for c in cols if any(p.get(c[0]) is not None for p in sweep.doc["points"])]
    rows = []
    for p in sweep.doc["points"]:
        cells = [td(escape(str(p.get(k))), "config") for k in grid]
        cells += [td(_num(None if p.get(key) is None else p[key] * scale, fmt)) for key, _, fmt, scale in shown]
        rows.append(cells)
    header = [escape(k) for k in grid] + [c[1] for c in shown]
    return f'<div class="table-wrap">{html_table(header, rows, "sweep")}</div>'


def _along(points: list[dict], setting: str) -> list[dict]:
    """A curve's points in the order of the swept setting (a load past capacity can complete fewer requests)."""
    numeric = all(isinstance(p.get(setting), (int, float)) for p in points)
    return sorted(points, key=lambda p: p[setting] if numeric else p["requests_per_s"])


def sweep_curves(index: int, sweep: Sweep) -> Chart | None:
    grid = sweep.doc["grid"]
    along = _curve_setting(grid)
    others = [k for k in grid if k != along]
    done = [p for p in sweep.doc["points"] if p.get("done") and p.get("requests_per_s") is not None]
    if not done:
        return None
    groups: dict[tuple, list[dict]] = {}
    for p in done:
        groups.setdefault(tuple(p.get(k) for k in others), []).append(p)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["TTFT p90", "TPOT p90"], horizontal_spacing=0.08)
    for k, (key, points) in enumerate(groups.items()):
        points = _along(points, along)
        name = ", ".join(f"{o}={v}" for o, v in zip(others, key)) or sweep.name
        text = [f"{along}={p.get(along)}, " + ", ".join(f"{o}={p.get(o)}" for o in others) for p in points]
        for col, metric in ((1, "ttft_p90_s"), (2, "tpot_p90_s")):
            fig.add_trace(go.Scatter(x=[p["requests_per_s"] for p in points],
                                     y=[None if p.get(metric) is None else p[metric] * 1e3 for p in points],
                                     mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                                     line=dict(color=color(k), width=1.6), text=text,
                                     hovertemplate="%{text}<br>%{x:.2f} req/s, %{y:.1f} ms<extra></extra>"),
                          row=1, col=col)
    edge = frontier([-p["requests_per_s"] for p in done], [p.get("ttft_p90_s") for p in done])
    if edge:
        pts = sorted((done[i] for i in edge), key=lambda p: p["requests_per_s"])
        fig.add_trace(go.Scatter(x=[p["requests_per_s"] for p in pts], y=[p["ttft_p90_s"] * 1e3 for p in pts],
                                 mode="lines", name="Pareto frontier", line=dict(color="#333", dash="dash", width=1.2),
                                 hoverinfo="skip"), row=1, col=1)
    config = sweep.doc["config"]
    for col, key, label in ((1, "slo_ttft", "TTFT"), (2, "slo_tpot", "TPOT")):
        if config.get(key) is not None:
            fig.add_hline(y=config[key] * 1e3, row=1, col=col, line=dict(color="#444", dash="dot", width=1),
                          annotation_text=f"SLO {config[key] * 1e3:g} ms", annotation_position="top left")
        fig.update_xaxes(title_text="throughput (completed req/s)", rangemode="tozero", row=1, col=col)
        fig.update_yaxes(title_text=f"{label} p90 (ms)", rangemode="tozero", row=1, col=col)
    by = f", one curve per {', '.join(others)}" if others else ""
    return Chart(f"sweep-curves-{index}", f"Throughput-latency curves: {sweep.name}",
                 f"Each point is one grid point, along {along}{by}. A curve bending upward is a configuration "
                 "reaching its capacity; the dashed line (TTFT panel) joins the points no other point beats on "
                 "both throughput and p90 TTFT.", style(fig, 440))


def sweep_sections(sweeps: list[Sweep], options, progress: Callable[[], None]) -> tuple[list[Section], list[str]]:
    sections, notes = [], []
    for i, sweep in enumerate(sweeps):
        if sweep.doc.get("interrupted"):
            notes.append(f"{sweep.name}: the sweep was interrupted; unfinished points are left out of the charts")
        sections.append(Section(f"sweep-{i}", f"Sweep: {sweep.name}", f"{sweep.description()}; latencies in ms.",
                                html=_sweep_table(sweep)))
        chart = sweep_curves(i, sweep)
        if chart is not None:
            sections.append(Section.of_chart(chart))
        progress()
    return sections, notes

