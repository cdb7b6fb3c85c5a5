"""Terminal tables for measured runs and for real-vs-predicted comparisons."""

from __future__ import annotations

import math

from rich.table import Table

from servesim.metrics.compare import LATENCIES, QUANTILES

LABELS = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E"}


def _ms(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 1000:.1f}"


def measured_table(metrics: dict) -> Table:
    t = Table(title="measured latency (ms) and throughput", title_justify="left")
    t.add_column("metric")
    for q in QUANTILES:
        t.add_column(f"p{q}", justify="right")
    for name in LATENCIES:
        t.add_row(LABELS[name], *(_ms(metrics.get(f"{name}_p{q}", math.nan)) for q in QUANTILES))
    t.add_row("requests completed / failed", f"{metrics['completed']:.0f} / {metrics['failed']:.0f}", "", "")
    if "output_tokens_per_s" in metrics:
        t.add_row("output tokens/s", f"{metrics['output_tokens_per_s']:.1f}", "", "")
        t.add_row("requests/s", f"{metrics['requests_per_s']:.2f}", "", "")
    return t


def comparison_table(rows, real: str, sim: str) -> Table:
    t = Table(title=f"real ({real}) vs predicted ({sim})", title_justify="left")
    for col, justify in (("metric", "left"), ("real", "right"), ("predicted", "right"), ("error", "right")):
        t.add_column(col, justify=justify)
    for key, a, b, err in rows:
        name, _, q = key.partition("_p")
        if name in LABELS:
            label, fa, fb = f"{LABELS[name]} p{q} (ms)", _ms(a), _ms(b)
        else:
            label = key.replace("_per_s", "/s").replace("_", " ")
            fa, fb = (f"{x:.2f}" if not math.isnan(x) else "-" for x in (a, b))
        t.add_row(label, fa, fb, "-" if math.isnan(err) else f"{err * 100:+.1f}%")
    return t
