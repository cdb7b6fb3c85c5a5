"""The report's plots, one function per chart, each overlaying every run given.

Every chart carries a sentence on how to read it and the count of traces it draws (the browser test checks
that count against what Plotly rendered). Times are seconds since the run's first arrival, latencies ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from servesim.report import series
from servesim.report.runs import Run
from servesim.report.slo import ReportSLO

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22")
PREFILL_COLOR, DECODE_COLOR = "#ff7f0e", "#1f77b4"
# no axis lines (showline): plotly.js draws an axis without data as a NaN path, a console error
_AXIS = dict(gridcolor="#ebebeb", zerolinecolor="#bdbdbd", ticks="outside", tickcolor="#bdbdbd", automargin=True)
# a few lines of style instead of a stock template: plotly validates a full template for every figure (slow)
TEMPLATE = dict(layout=dict(paper_bgcolor="white", plot_bgcolor="white", colorway=list(COLORS),
                            font=dict(family="system-ui, sans-serif", size=12, color="#333"),
                            xaxis=_AXIS, yaxis=_AXIS))


@dataclass
class Chart:
    id: str
    title: str
    explain: str
    figure: go.Figure
    notes: list[str] = field(default_factory=list)

    @property
    def traces(self) -> int:
        return len(self.figure.data)


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def style(fig: go.Figure, height: int) -> go.Figure:
    fig.layout.template = TEMPLATE  # replaces plotly's default template (update_layout would merge into it)
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=40, b=40),
                      legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0), hovermode="closest")
    return fig


def _t0(run: Run) -> float:
    arrival = run.requests["arrival_s"]
    return float(np.nanmin(arrival)) if len(arrival) else 0.0


def _line(run_index: int, run: Run, x, y, name: str, dash: str = "solid", first: bool = True, **extra) -> go.Scatter:
    return go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=run.name, showlegend=first,
                      line=dict(color=color(run_index), dash=dash, width=1.6), **extra)


LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("itl", "ITL"), ("e2e_s", "E2E"))


def latency_cdfs(runs: list[Run], slo: ReportSLO) -> Chart:
    fig = make_subplots(rows=2, cols=2, subplot_titles=[label for _, label in LATENCIES],
                        horizontal_spacing=0.08, vertical_spacing=0.2)
    for i, run in enumerate(runs):
        for k, (key, label) in enumerate(LATENCIES):
            values = run.itl_values if key == "itl" else run.requests[key]
            x, p = series.cdf(values)
            fig.add_trace(_line(i, run, x * 1e3, p * 100, run.name, first=k == 0, line_shape="hv",
                                hovertemplate=f"{label} %{{x:.1f}} ms: %{{y:.2f}}% of values at or below"
                                              f"<extra>{run.name}</extra>"),
                          row=k // 2 + 1, col=k % 2 + 1)
    for k, (key, label) in enumerate(LATENCIES):
        # from zero: latencies are, and an axis whose values are all equal otherwise has no width
        fig.update_xaxes(title_text=f"{label} (ms)", rangemode="tozero", row=k // 2 + 1, col=k % 2 + 1)
        fig.update_yaxes(title_text="% at or below", range=[0, 101], row=k // 2 + 1, col=k % 2 + 1)
    for target, row, col, label in ((slo.ttft, 1, 1, "TTFT"), (slo.tpot, 1, 2, "TPOT")):
        if target is not None:
            fig.add_vline(x=target * 1e3, row=row, col=col, line=dict(color="#444", dash="dash", width=1),
                          annotation_text=f"SLO {target * 1e3:g} ms", annotation_position="bottom right")
    return Chart("latency-cdfs", "Latency distributions",
                 "Each curve is a cumulative distribution: read across at 99% to find the p99. A curve further "
                 "left is faster; a long flat top is a tail. Dashed lines are the SLOs. ITL counts every gap "
                 "between two tokens of a request; TPOT is each request's mean gap.",
                 style(fig, 620))


def latency_over_time(runs: list[Run], slo: ReportSLO) -> Chart:
    metrics = (("ttft_s", "TTFT", slo.ttft), ("tpot_s", "TPOT", slo.tpot), ("e2e_s", "E2E", None))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[f"{label} by arrival time" for _, label, _ in metrics])
    widths = []
    for i, run in enumerate(runs):
        t = run.requests["arrival_s"] - _t0(run)
        edges, width = series.windows(0.0, float(np.nanmax(t)) if len(t) else 1.0)
        widths.append(width)
        mid = (edges[:-1] + edges[1:]) / 2
        for k, (key, label, _) in enumerate(metrics):
            p50, p99 = series.window_percentiles(t, run.requests[key], edges)
            for values, q, dash in ((p50, "p50", "solid"), (p99, "p99", "dot")):
                fig.add_trace(_line(i, run, mid, values * 1e3, f"{run.name} {q}", dash, first=k == 0,
                                    connectgaps=False,
                                    hovertemplate=f"{label} {q} %{{y:.1f}} ms, arrivals at %{{x:.0f}} s"
                                                  f"<extra>{run.name}</extra>"),
                              row=k + 1, col=1)
    for k, (_, label, target) in enumerate(metrics):
        fig.update_yaxes(title_text=f"{label} (ms)", rangemode="tozero", row=k + 1, col=1)
        if target is not None:
            fig.add_hline(y=target * 1e3, row=k + 1, col=1, line=dict(color="#444", dash="dash", width=1),
                          annotation_text=f"SLO {target * 1e3:g} ms", annotation_position="top left")
    fig.update_xaxes(title_text="time since first arrival (s)", row=3, col=1)
    return Chart("latency-over-time", "Latency over time",
                 f"Median (solid) and p99 (dotted) of the requests arriving in each window of "
                 f"{_widths(widths)}. Rising lines mean the server falls behind the load; a gap is a "
                 "window with no arrivals.", style(fig, 720))


def throughput_over_time(runs: list[Run], slo: ReportSLO) -> Chart:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["requests completed per second" + (" and goodput" if slo.defined else ""),
                                        "output tokens per second"])
    widths = []
    for i, run in enumerate(runs):
        req = run.requests
        t0 = _t0(run)
        done = req["completed"]
        finished = req["finished_s"][done] - t0
        tokens = series.token_times(req["first_token_s"][done], _offsets(run, done), _itl_of(run, done)) - t0
        end = max(float(finished.max()) if len(finished) else 1.0, 1e-3)
        edges, width = series.windows(0.0, end)
        widths.append(width)
        mid = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(_line(i, run, mid, series.rate(finished, edges), f"{run.name} completed", line_shape="hv",
                            hovertemplate="%{y:.2f} req/s<extra>" + run.name + "</extra>"), row=1, col=1)
        if slo.defined:
            good = slo.met(run)[done]
            fig.add_trace(_line(i, run, mid, series.rate(finished[good], edges), f"{run.name} goodput", "dot",
                                first=False, line_shape="hv",
                                hovertemplate="goodput %{y:.2f} req/s<extra>" + run.name + "</extra>"),
                          row=1, col=1)
        fig.add_trace(_line(i, run, mid, series.rate(tokens, edges), f"{run.name} tokens", first=False,
                            line_shape="hv", hovertemplate="%{y:,.0f} tokens/s<extra>" + run.name + "</extra>"),
                      row=2, col=1)
    fig.update_yaxes(title_text="requests/s", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="tokens/s", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="time since first arrival (s)", row=2, col=1)
    good = (" Goodput (dotted) counts only the requests meeting every SLO, DistServe's definition; the space "
            "between the two lines is work that missed its SLO.") if slo.defined else ""
    return Chart("throughput-over-time", "Throughput and goodput over time",
                 f"Requests finishing and output tokens produced per second, in windows of {_widths(widths)}."
                 + good, style(fig, 560))


def _offsets(run: Run, keep: np.ndarray) -> np.ndarray:
    counts = np.diff(run.itl_offsets)[keep]
    return np.concatenate([[0], np.cumsum(counts)])


def _itl_of(run: Run, keep: np.ndarray) -> np.ndarray:
    if keep.all():
        return run.itl_values
    counts = np.diff(run.itl_offsets)
    return run.itl_values[np.repeat(keep, counts)]


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
MAX_REPLICA_PANELS = 4


def _replica_label(run: Run, replica: int | None) -> str:
    return run.name if replica is None else f"{run.name} replica {replica}"


def engine_state(runs: list[Run]) -> Chart | None:
    with_steps = [(i, r) for i, r in enumerate(runs) if r.steps is not None]
    if not with_steps:
        return None
    rows = (("waiting", "queue length (waiting requests)", 1.0), ("running", "running batch size (requests)", 1.0),
            ("kv_usage", "KV cache usage (%)", 100.0))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=[title for _, title, _ in rows])
    widths = []
    for i, run in with_steps:
        t0 = _t0(run)
        for j, (replica, st) in enumerate(run.replica_steps()):
            start = st["start"] - t0
            end = float((start + st["duration"]).max()) if len(start) else 1.0
            edges, width = series.windows(0.0, max(end, 1e-3))
            widths.append(width)
            mid = (edges[:-1] + edges[1:]) / 2
            label = _replica_label(run, replica)
            for k, (key, title, scale) in enumerate(rows):
                mean, peak = series.step_state(start, st["duration"], st[key].astype(np.float64) * scale, edges)
                fig.add_trace(_line(i, run, mid, mean, label, DASHES[j % len(DASHES)], first=k == 0,
                                    customdata=peak, connectgaps=False,
                                    hovertemplate="mean %{y:.1f}, peak %{customdata:.0f} at %{x:.0f} s"
                                                  f"<extra>{label}</extra>"),
                              row=k + 1, col=1)
    for k, (_, title, _) in enumerate(rows):
        fig.update_yaxes(rangemode="tozero", row=k + 1, col=1)
    fig.update_xaxes(title_text="time since first arrival (s)", row=3, col=1)
    notes = [f"{r.name}: measured run, no step log" for r in runs if r.steps is None]
    return Chart("engine-state", "Queue, batch and KV cache over time",
                 f"Duration-weighted mean over the engine steps in each window of {_widths(widths)} (hover for "
                 "the peak), one line per replica. A growing queue with a full KV cache means the replica is "
                 "saturated; a KV cache near 100% with preemptions means requests are being recomputed.",
                 style(fig, 620), notes)


def step_composition(index: int, run: Run) -> Chart:
    replicas = run.replica_steps()
    shown = replicas[:MAX_REPLICA_PANELS]
    fig = make_subplots(rows=len(shown), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[f"replica {r}" for r, _ in shown] if shown[0][0] is not None else None)
    t0 = _t0(run)
    sampled = []
    for row, (replica, st) in enumerate(shown, start=1):
        n = len(st["start"])
        starts = series.step_buckets(n)
        k = int(starts[1] - starts[0]) if len(starts) > 1 else 1
        sampled.append((k, n))
        x = st["start"][starts] - t0
        for key, label, col in (("decode_tokens", "decode tokens", DECODE_COLOR),
                                ("prefill_tokens", "prefill tokens", PREFILL_COLOR)):
            fig.add_trace(go.Scatter(x=x, y=series.bucket_mean(st[key], starts), name=label, mode="lines",
                                     stackgroup=f"tokens{row}", line_shape="hv", line=dict(color=col, width=0.8),
                                     legendgroup=label, showlegend=row == 1,
                                     hovertemplate=f"{label} %{{y:.0f}} per step at %{{x:.2f}} s<extra></extra>"),
                          row=row, col=1)
        fig.update_yaxes(title_text="tokens per step", rangemode="tozero", row=row, col=1)
    fig.update_xaxes(title_text="time since first arrival (s)", row=len(shown), col=1)
    k, n = max(sampled)
    text = (f" Each point is the mean of up to {k} consecutive steps ({n:,} steps in the longest log)." if k > 1
            else f" One point per step ({n:,} steps).")
    notes = ([f"showing replicas {', '.join(str(r) for r, _ in shown)} of {len(replicas)}"]
             if len(replicas) > len(shown) else [])
    return Chart(f"step-composition-{index}", f"Step composition: {run.name}",
                 "Tokens each engine step processes, prompt (prefill) stacked on decode. Under vLLM's single "
                 "token budget a step mixes both: prefill spikes are chunked prompts that slow the decodes "
                 "sharing their step." + text, style(fig, 120 + 240 * len(shown)), notes)


def _widths(widths: list[float]) -> str:
    unique = sorted(set(widths))
    return " / ".join(f"{w:g} s" for w in unique)
