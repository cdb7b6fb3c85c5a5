"""Rich tables for the terminal, and a progress bar that only appears for runs longer than a second."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def _ms(x):
    return "-" if x is None else f"{x * 1000:.1f}"


LATENCY_ROWS = (
    ("ttft", "TTFT", "arrival to first token"),
    ("tpot", "TPOT", "a request's mean gap between tokens after the first"),
    ("itl", "ITL", "every gap between two tokens"),
    ("e2e", "E2E", "arrival to last token"),
    ("queue", "queueing", "arrival to first scheduled"),
)


def summary_tables(summary: dict, title: str = "", slo_attainment: float = 0.9) -> list[Table]:
    tables = []
    lat = summary.get("latency_s") or {}
    if lat:
        t = Table(title=title or "latency (ms)", title_justify="left")
        t.add_column("metric")
        for col in ("mean", "p50", "p90", "p95", "p99"):
            t.add_column(col, justify="right")
        for key, label, _ in LATENCY_ROWS:
            d = lat.get(key) or {}
            t.add_row(label, *(_ms(d.get(c)) for c in ("mean", "p50", "p90", "p95", "p99")))
        t.caption = "; ".join(f"{label}: {meaning}" for _, label, meaning in LATENCY_ROWS)
        t.caption_justify = "left"
        tables.append(t)
    t = Table(title="throughput and load", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    r = summary["requests"]
    t.add_row("requests completed / rejected", f"{r['completed']} / {r['rejected']}")
    tp = summary.get("throughput") or {}
    if tp:
        t.add_row("duration (s)", f"{tp['duration_s']:.1f}")
        for key, label in (("requests_per_s", "requests/s"), ("input_tokens_per_s", "input tokens/s"),
                           ("output_tokens_per_s", "output tokens/s")):
            t.add_row(label, "-" if tp[key] is None else f"{tp[key]:.2f}")
    slo = summary.get("slo")
    if slo and (slo["ttft_s"] is not None or slo["tpot_s"] is not None):
        target = ", ".join(f"{k.upper()} <= {_ms(slo[k + '_s'])} ms" for k in ("ttft", "tpot") if slo[k + "_s"] is not None)
        t.add_row(f"SLO attainment ({target})", f"{slo['attainment'] * 100:.1f}%")
        good = slo["goodput_requests_per_s"]
        t.add_row("goodput (requests/s meeting the SLO)", "-" if good is None else f"{good:.2f}")
        passed = slo["attainment"] >= slo_attainment
        t.add_row(f"verdict (needs {slo_attainment * 100:g}% attainment)",
                  "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]")
    eng = summary.get("engine")
    if eng:
        t.add_row("preemptions", str(r["preemptions"]))
        t.add_row("KV cache usage peak / mean", f"{eng['kv_usage_peak'] * 100:.1f}% / {(eng['kv_usage_mean'] or 0) * 100:.1f}%")
        t.add_row("running requests mean / peak", f"{eng['running_mean'] or 0:.1f} / {eng['running_peak']}")
        t.add_row("waiting requests peak", str(eng["waiting_peak"]))
        pc = summary.get("prefix_cache") or {}
        if pc.get("hit_tokens"):
            t.add_row("prefix cache hit rate (prompt tokens)", f"{pc['hit_rate'] * 100:.1f}%")
    tables.append(t)
    return tables


ROLES = {"colocated": "P+D", "prefill": "P", "decode": "D"}


def cluster_tables(summary: dict) -> list[Table]:
    """Per-replica load, the disaggregated TTFT breakdown and per-client latency, where the run has them."""
    tables = []
    reps = summary.get("replicas")
    if reps:
        t = Table(title="replicas (TTFT in ms; busy = share of the run spent stepping)", title_justify="left")
        for col in ("#", "role", "GPU", "TP", "reqs", "TTFT p50", "TTFT p99", "busy", "KV mean", "hits"):
            t.add_column(col, justify="right")
        for r in reps:
            hits = r.get("prefix_hit_rate")
            t.add_row(str(r["replica"]), ROLES[r["role"]], r["gpu"], str(r["tp"]), str(r["requests"]), _ms(r["ttft_p50_s"]),
                      _ms(r["ttft_p99_s"]), "-" if r["busy_fraction"] is None else f"{r['busy_fraction'] * 100:.0f}%",
                      f"{r['kv_usage_mean'] * 100:.0f}%", "-" if hits is None else f"{hits * 100:.1f}%")
        tables.append(t)
    parts = summary.get("ttft_breakdown_s")
    if parts:
        t = Table(title="TTFT breakdown, disaggregated (ms)", title_justify="left")
        t.add_column("part")
        for col in ("mean", "p50", "p99"):
            t.add_column(col, justify="right")
        for name, d in parts.items():
            t.add_row(name.replace("_", " "), *(_ms(d.get(c)) for c in ("mean", "p50", "p99")))
        tables.append(t)
    clients = summary.get("clients")
    if clients:
        t = Table(title="clients", title_justify="left")
        for col in ("client", "requests", "TTFT p50 ms", "TTFT p99 ms", "E2E p99 ms", "output share"):
            t.add_column(col, justify="right")
        for name, c in clients.items():
            t.add_row(name, str(c["requests"]), _ms(c["ttft_p50_s"]), _ms(c["ttft_p99_s"]), _ms(c["e2e_p99_s"]),
                      f"{c['output_token_share'] * 100:.1f}%")
        tables.append(t)
    cl = summary.get("cluster")
    if cl and cl.get("gpus", 1) > 1:
        t = Table(title="per GPU", title_justify="left", show_header=False)
        t.add_column("what")
        t.add_column("value", justify="right")
        t.add_row("GPUs", str(cl["gpus"]))
        for key, label in (("requests_per_s_per_gpu", "requests/s per GPU"),
                           ("output_tokens_per_s_per_gpu", "output tokens/s per GPU"),
                           ("goodput_requests_per_s_per_gpu", "goodput (requests/s) per GPU")):
            t.add_row(label, "-" if cl.get(key) is None else f"{cl[key]:.3f}")
        tables.append(t)
    return tables


class LazyProgress:
    """A progress bar with ETA that appears only once the work has taken over a second."""

    def __init__(self, total: int, description: str, console: Console, enabled: bool = True):
        self.total, self.description, self.console, self.enabled = total, description, console, enabled
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task = None
        self.done = 0

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            if time.monotonic() - self.started < 1.0:
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=self.total)
        self.progress.update(self.task, completed=done)

    def advance(self) -> None:
        """One more unit done: for work reported stage by stage rather than as a count."""
        self.done += 1
        self(self.done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
