"""Per-run metrics computed from requests.parquet alone, so a measured run and a simulated one are read the same
way, and their comparison: real, predicted, relative error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from servesim.errors import ServesimError

LATENCIES = ("ttft", "tpot", "itl", "e2e")
QUANTILES = (50, 90, 99)


def load_requests(run_dir: str | Path):
    run = Path(run_dir)
    path = run / "requests.parquet"
    if not run.is_dir():
        raise ServesimError(f"run directory {str(run)!r} does not exist")
    if not path.exists():
        raise ServesimError(f"{run}: no requests.parquet; expected the output of `servesim simulate -o` or `servesim measure -o`")
    table = pq.read_table(path)
    missing = [c for c in ("arrival_s", "finished_s", "ttft_s", "tpot_s", "e2e_s", "output_tokens", "itl_s", "finish_reason")
               if c not in table.column_names]
    if missing:
        raise ServesimError(f"{path}: missing column(s) {', '.join(missing)}; not a servesim result")
    return table


def run_metrics(table) -> dict[str, float]:
    """TTFT/TPOT/ITL/E2E p50/p90/p99 (seconds) and throughput over the completed requests."""
    done = np.asarray(pc.not_equal(table["finish_reason"], "rejected").to_numpy(zero_copy_only=False), dtype=bool)
    out: dict[str, float] = {"completed": float(done.sum()), "failed": float((~done).sum())}
    if not done.any():
        return out
    col = {name: table[f"{name}_s"].to_numpy(zero_copy_only=False)[done] for name in ("ttft", "tpot", "e2e")}
    itl = table.filter(done)["itl_s"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    col["itl"] = itl
    for name in LATENCIES:
        values = col[name][~np.isnan(col[name])]
        for q in QUANTILES:
            out[f"{name}_p{q}"] = float(np.percentile(values, q)) if len(values) else math.nan
    arrival = table["arrival_s"].to_numpy(zero_copy_only=False)[done]
    finished = table["finished_s"].to_numpy(zero_copy_only=False)[done]
    span = float(finished.max() - arrival.min())
    tokens = float(table["output_tokens"].to_numpy(zero_copy_only=False)[done].sum())
    out["duration_s"] = span
    out["output_tokens_per_s"] = tokens / span if span > 0 else math.nan
    out["requests_per_s"] = float(done.sum()) / span if span > 0 else math.nan
    return out


def compare_runs(real_dir: str | Path, sim_dir: str | Path) -> list[tuple[str, float, float, float]]:
    """(metric, real, predicted, relative error = predicted / real - 1) for every metric both runs have."""
    real, sim = run_metrics(load_requests(real_dir)), run_metrics(load_requests(sim_dir))
    if real.get("completed", 0) == 0:
        raise ServesimError(f"{real_dir}: no completed requests to compare")
    if real["completed"] != sim.get("completed"):
        raise ServesimError(f"{real_dir} completed {real['completed']:.0f} requests but {sim_dir} "
                            f"{sim.get('completed', 0):.0f}: compare runs of the same workload")
    rows = []
    for key in [f"{n}_p{q}" for n in LATENCIES for q in QUANTILES] + ["output_tokens_per_s", "requests_per_s"]:
        a, b = real.get(key, math.nan), sim.get(key, math.nan)
        err = b / a - 1.0 if a and not math.isnan(a) and not math.isnan(b) else math.nan
        rows.append((key, a, b, err))
    return rows


def rows_as_json(rows) -> str:
    return json.dumps({k: {"real": _nan(a), "predicted": _nan(b), "rel_error": _nan(e)} for k, a, b, e in rows},
                      indent=1)


def _nan(x: float):
    return None if math.isnan(x) else x
