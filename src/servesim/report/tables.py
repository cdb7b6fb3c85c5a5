"""The report's HTML tables: the summary with SLO verdicts, and for several runs a side-by-side comparison."""

from __future__ import annotations

from html import escape

from servesim.report.runs import Run
from servesim.report.slo import ReportSLO

# (label, path in summary.json's summary, which way is better, unit scale, format)
METRICS = (
    ("requests/s", ("throughput", "requests_per_s"), "higher", 1, "{:.2f}"),
    ("output tokens/s", ("throughput", "output_tokens_per_s"), "higher", 1, "{:,.0f}"),
    ("goodput req/s", ("slo", "goodput_requests_per_s"), "higher", 1, "{:.2f}"),
    ("TTFT p50 ms", ("latency_s", "ttft", "p50"), "lower", 1e3, "{:.1f}"),
    ("TTFT p99 ms", ("latency_s", "ttft", "p99"), "lower", 1e3, "{:.1f}"),
    ("TPOT p50 ms", ("latency_s", "tpot", "p50"), "lower", 1e3, "{:.2f}"),
    ("TPOT p99 ms", ("latency_s", "tpot", "p99"), "lower", 1e3, "{:.2f}"),
    ("ITL p99 ms", ("latency_s", "itl", "p99"), "lower", 1e3, "{:.2f}"),
    ("E2E p50 ms", ("latency_s", "e2e", "p50"), "lower", 1e3, "{:.0f}"),
    ("E2E p99 ms", ("latency_s", "e2e", "p99"), "lower", 1e3, "{:.0f}"),
    ("queueing p99 ms", ("latency_s", "queue", "p99"), "lower", 1e3, "{:.1f}"),
    ("preemptions", ("requests", "preemptions"), "lower", 1, "{:,}"),
    ("KV cache peak %", ("engine", "kv_usage_peak"), None, 100, "{:.1f}"),
)


def lookup(summary: dict, path: tuple[str, ...]):
    node = summary
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node if isinstance(node, (int, float)) else None


def _fmt(value, scale, fmt) -> str:
    return "-" if value is None else fmt.format(value * scale if scale != 1 else value)


def _pct(share) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def html_table(header: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def td(text: str, cls: str = "", title: str = "") -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' title="{escape(title)}"' if title else "")
    return f"<td{attrs}>{text}</td>"


SUMMARY_COLUMNS = (
    ("requests/s", ("requests/s",)), ("output tokens/s", ("output tokens/s",)),
    ("TTFT p50 / p99 ms", ("TTFT p50 ms", "TTFT p99 ms")), ("TPOT p50 / p99 ms", ("TPOT p50 ms", "TPOT p99 ms")),
    ("ITL p99 ms", ("ITL p99 ms",)), ("E2E p50 / p99 ms", ("E2E p50 ms", "E2E p99 ms")),
    ("preemptions", ("preemptions",)), ("KV cache peak %", ("KV cache peak %",)),
)


def summary_table(runs: list[Run]) -> str:
    by_label = {m[0]: m for m in METRICS}
    kinds = len({run.kind for run in runs}) > 1  # real and simulated side by side: say which is which
    header = (["run"] + (["kind"] if kinds else []) + ["done / rejected"]
              + [escape(label) for label, _ in SUMMARY_COLUMNS])
    rows = []
    for run in runs:
        s = run.summary
        r = s.get("requests") or {}
        cells = [td(escape(run.name), "name", run.description() + f" ({run.kind})")]
        cells += [td(run.kind, "config")] if kinds else []
        cells.append(td(f"{r.get('completed', '-')} / {r.get('rejected', '-')}"))
        for _, metrics in SUMMARY_COLUMNS:
            parts = [_fmt(lookup(s, by_label[m][1]), by_label[m][3], by_label[m][4]) for m in metrics]
            cells.append(td(" / ".join(parts)))
        rows.append(cells)
    return html_table(header, rows, "summary")


def slo_table(runs: list[Run], slo: ReportSLO) -> str:
    """Per run: the share of requests meeting each SLO and all of them, goodput, and PASS or FAIL."""
    header = ["run"] + [escape(f"{name} <= {v * 1e3:g} ms") for name, v in (("TTFT", slo.ttft), ("TPOT", slo.tpot))
                        if v is not None]
    header += ["all SLOs met", "goodput req/s", f"verdict (target {slo.attainment * 100:g}%)"]
    rows = []
    for run in runs:
        v = slo.verdict(run)
        cells = [td(escape(run.name), "name", run.description() + f" ({run.kind})")]
        cells += [td(_pct(v[key])) for key, target in (("ttft_share", slo.ttft), ("tpot_share", slo.tpot))
                  if target is not None]
        cells.append(td(_pct(v["share"])))
        duration = lookup(run.summary, ("throughput", "duration_s"))
        met = v["share"] * len(run.requests["arrival_s"])
        cells.append(td(_fmt(met / duration if duration else None, 1, "{:.2f}")))  # under the report's SLOs
        cells.append(td("PASS" if v["passed"] else "FAIL", "pass" if v["passed"] else "fail",
                         f"{_pct(v['share'])} of requests meet {slo.describe()}; the target is "
                         f"{slo.attainment * 100:g}%"))
        rows.append(cells)
    return html_table(header, rows, "slo")


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(runs: list[Run]) -> dict[str, list]:
    flat = [_flatten(run.config) for run in runs]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}


def comparison_table(runs: list[Run]) -> str:
    """Runs side by side; each metric's change against the first run, green where it is better."""
    header = ["", *(escape(r.name) for r in runs)]
    rows = []
    for key, values in config_differences(runs).items():
        rows.append([td(escape(key), "name")] + [td(escape("-" if v is None else str(v)), "config") for v in values])
    for label, path, better, scale, fmt in METRICS:
        values = [lookup(r.summary, path) for r in runs]
        if all(v is None for v in values):
            continue
        cells = [td(escape(label), "name")]
        b = values[0]
        for i, v in enumerate(values):
            text = _fmt(v, scale, fmt)
            cls = ""
            if i and v is not None and b not in (None, 0):
                change = (v - b) / abs(b)
                text += f' <span class="delta">{change * 100:+.1f}%</span>'
                if better and abs(change) >= 0.005:
                    cls = "better" if (change < 0) == (better == "lower") else "worse"
            cells.append(td(text, cls))
        rows.append(cells)
    return html_table(header, rows, "compare")
