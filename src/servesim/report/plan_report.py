"""The planner's terminal output: the ranked deployments, the winner's command line, the frontiers, and
when nothing meets the target, the nearest misses."""

from __future__ import annotations

from rich.table import Table


def _ms(x):
    return "-" if x is None else f"{x * 1000:.0f}"


def _num(x, fmt="{:.2f}"):
    return "-" if x is None else fmt.format(x)


def _knobs(c: dict) -> str:
    e = c.get("engine") or {}
    chunk = c.get("long_prefill_token_threshold") or 0
    return f"{e.get('max_num_seqs')}/{e.get('max_num_batched_tokens')}" + (f"/{chunk}" if chunk else "")


def replica_label(c: dict) -> str:
    """One replica (or xPyD unit) in words: `h100 TP4`, `h100 2P TP2 + 1D TP4`."""
    pp = f" PP{c['pp']}" if c.get("pp", 1) > 1 else ""
    dtype = f" {c['dtype']}" if c.get("dtype", "bf16") != "bf16" else ""
    if c.get("mode", "colocated") == "colocated":
        return f"{c['gpu']} TP{c['tp']}{pp}{dtype}"
    p = f"{c['prefill_replicas']}P TP{c['prefill_tp']}"
    d = f"{c['decode_replicas']}D TP{c['decode_tp']}"
    if c["prefill_gpu"] == c["decode_gpu"]:
        return f"{c['prefill_gpu']} {p} + {d}{pp}{dtype}"
    return f"{c['prefill_gpu']} {p} + {c['decode_gpu']} {d}{pp}{dtype}"


def ranked_table(doc: dict, rows: int = 10) -> Table:
    req = doc["request"]
    title = (f"deployments serving {req['qps']:g} req/s of {doc['workload']['name']} with {req['model']['name']} "
             f"(>= {req['attainment']:.0%} of requests within TTFT {_ms(req['slo_ttft_s'])} ms"
             + (f", TPOT {_ms(req['slo_tpot_s'])} ms" if req["slo_tpot_s"] is not None else "") + ")")
    t = Table(title=title, title_justify="left")
    for col in ("#", "replica", "seqs/tokens", "x", "GPUs", "$/h", "cap req/s", "req/s/GPU", "req/$", "TTFT90 ms", "TPOT90 ms"):
        t.add_column(col, justify="left" if col == "replica" else "right")
    for c in doc["candidates"]:
        if c["rank"] is None or c["rank"] > rows:
            continue
        at = c["operating"] or c["at_capacity"] or {}
        t.add_row(str(c["rank"]), replica_label(c), _knobs(c), str(c["replicas"]), str(c["gpus"]), _num(c["cost_per_hour"]),
                  _num(c["capacity_requests_per_s"]), _num(c["goodput_per_gpu_requests_per_s"]),
                  _num(c["requests_per_dollar"], "{:,.0f}"), _ms(at.get("ttft_p90_s")), _ms(at.get("tpot_p90_s")))
    t.caption = ("replica: one replica, or one xPyD unit (x prefill + y decode replicas); x = replicas; cap = "
                 "capacity of one replica; latencies of the whole deployment at the target rate for the top rows, "
                 "else of one replica at capacity; seqs/tokens = max_num_seqs/max_num_batched_tokens")
    return t


def counts_line(doc: dict) -> str:
    parts = [f"{n} {status}" for status, n in doc["counts"].items()]
    simulated = sum(len(c["probes"]) for c in doc["candidates"])
    left = (doc.get("left_out") or {}).get("disaggregated_units_with_a_pool_that_does_not_fit")
    left = f" (and {left} xPyD units with a pool that does not fit, not listed)" if left else ""
    return f"{len(doc['candidates'])} candidates{left}: " + ", ".join(parts) + f"; {simulated} capacity probes"


def frontier_tables(doc: dict) -> list[Table]:
    t1 = Table(title="Pareto frontier: cost vs p90 TTFT (deployments meeting the SLOs)", title_justify="left")
    for col in ("candidate", "replicas", "$/hour", "TTFT p90 ms"):
        t1.add_column(col)
    for r in doc["pareto"]["cost_vs_ttft_p90"][:8]:
        t1.add_row(r["candidate_id"], str(r["replicas_for_target"]), _num(r["cost_per_hour_for_target"]), _ms(r["ttft_p90_s"]))
    t2 = Table(title="Pareto frontier: output tokens/s per GPU vs tokens/s per user (every probe)", title_justify="left")
    for col in ("candidate", "rate req/s", "tok/s/GPU", "tok/s/user"):
        t2.add_column(col)
    for r in doc["pareto"]["throughput_vs_user_speed"][:8]:
        t2.add_row(r["candidate_id"], _num(r["rate"]), _num(r["output_tokens_per_s_per_gpu"], "{:,.0f}"),
                   _num(r["tokens_per_s_per_user"], "{:.1f}"))
    return [t1, t2]


def closest_table(doc: dict) -> Table:
    req = doc["request"]
    t = Table(title=f"no deployment meets {req['qps']:g} req/s within the SLOs and --max-gpus {req['max_gpus']}; closest:",
              title_justify="left")
    for col in ("candidate", "reaches req/s", "short by", "why"):
        t.add_column(col)
    for c in doc["closest"]:
        reach = c["reachable_requests_per_s"]
        t.add_row(c["id"], _num(reach) if reach else "-", f"{c['shortfall']:.0%}" if reach else "-", c["detail"])
    return t


class SearchProgress:
    """Candidates simulated so far out of those still in the running (pruning shrinks the total), with ETA."""

    def __init__(self, console, description: str, enabled: bool = True):
        self.console, self.description, self.enabled = console, description, enabled
        self.progress = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=total)
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def sweep_table(grid: dict, rows: list[dict]) -> Table:
    t = Table(title="sweep", title_justify="left")
    names = list(grid)
    for name in names:
        t.add_column(name, justify="right")
    cols = (("requests_per_s", "req/s", "{:.2f}"), ("output_tokens_per_s", "out tok/s", "{:,.0f}"),
            ("ttft_p90_s", "TTFT p90 ms", None), ("tpot_p90_s", "TPOT p90 ms", None),
            ("slo_attainment", "SLO %", "{:.1%}"), ("goodput_requests_per_s", "goodput req/s", "{:.2f}"))
    shown = [c for c in cols if any(c[0] in r for r in rows)]
    for _, label, _ in shown:
        t.add_column(label, justify="right")
    for r in rows:
        cells = [str(r[n]) for n in names]
        for key, _, fmt in shown:
            value = r.get(key)
            cells.append(_ms(value) if fmt is None else _num(value, fmt))
        t.add_row(*cells)
    return t
