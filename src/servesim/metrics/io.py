"""Result files: summary.json, requests.parquet, steps.parquet and the resolved config.yaml.

The same schema is written by `simulate` and by `measure` (a real server), so `compare` reads either.
Nothing time-of-day or machine-specific goes into a file: same config and seed give identical bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from servesim import __version__
from servesim.errors import ServesimError
from servesim.metrics.latency import itl_blocks, itl_counts, request_latencies, step_ends
from servesim.metrics.row_groups import request_bounds, row_bounds, write_row_groups
from servesim.metrics.steps import COLUMNS, StepTable

FINISH_REASONS = np.array(["", "length", "max_model_len", "rejected"])
RESULT_FILES = ("summary.json", "requests.parquet", "steps.parquet", "config.yaml")
EXTRA_REQUEST_COLUMNS = {"replica": "replica", "decode_replica": "decode_replica", "client": "client",
                         "priority": "priority", "prefill_done": "prefill_done_s", "kv_arrived": "kv_arrived_s"}


def _clean(x):
    """JSON-safe: NaN and inf become null, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def requests_table(reqs: dict[str, np.ndarray], itl_offsets: np.ndarray, itl_values: np.ndarray,
                   replica: np.ndarray | None = None, first_id: int = 0) -> pa.Table:
    """`first_id`: the id of the first request given (a row group of a larger run)."""
    lat = request_latencies(reqs)
    n = len(reqs["arrival"])
    itl = pa.ListArray.from_arrays(pa.array(itl_offsets.astype(np.int32)), pa.array(itl_values, type=pa.float64()))
    columns = {
        "request_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "arrival_s": reqs["arrival"],
        "prompt_tokens": reqs["prompt_len"],
        "output_tokens": reqs["output_len"],
        "ttft_s": lat["ttft"],
        "tpot_s": lat["tpot"],
        "e2e_s": lat["e2e"],
        "queue_s": lat["queue"],
        "first_token_s": reqs["first_token"],
        "finished_s": reqs["finished"],
        "preemptions": reqs["preemptions"],
        "cached_tokens": reqs["cached_tokens"],
        "finish_reason": FINISH_REASONS[reqs["finish_reason"]],
    }
    for name in EXTRA_REQUEST_COLUMNS:  # cluster runs: where each request ran, and the disaggregated timeline
        if name in reqs:
            columns[EXTRA_REQUEST_COLUMNS[name]] = reqs[name]
    if "prefill_done" in reqs:
        from servesim.metrics.cluster import ttft_parts

        columns.update({f"{k}_s": v for k, v in ttft_parts(reqs).items()})
    table = pa.table(columns)
    table = table.append_column("itl_s", itl)
    if replica is not None:
        table = table.append_column("replica", pa.array(replica))
    return table


def steps_table(steps: dict[str, np.ndarray], kv_blocks_usable: int | np.ndarray, first_step: int = 0) -> pa.Table:
    """`first_step`: the index of the first step given (a row group of a larger run)."""
    columns = {"step": np.arange(first_step, first_step + len(steps["start"]), dtype=np.int64), **steps}
    columns["end"] = step_ends(steps)
    columns["kv_usage"] = steps["kv_blocks_used"] / np.maximum(1, steps.get("kv_blocks_usable", kv_blocks_usable))
    return pa.table(columns)


def write_requests(path: Path, reqs: dict[str, np.ndarray], steps, emits) -> None:
    """requests.parquet, a row group of requests at a time (see row_groups.py)."""
    bounds = request_bounds(itl_counts(emits, len(reqs["arrival"])))
    groups = zip(bounds[:-1], bounds[1:], itl_blocks(steps, emits, bounds))
    write_row_groups(path, (requests_table({k: v[r0:r1] for k, v in reqs.items()}, offsets, values, first_id=r0)
                            for r0, r1, (offsets, values) in groups))


def write_steps(path: Path, steps, kv_blocks_usable: int) -> None:
    """steps.parquet, a row group of steps at a time, each expanded from the replicas' logs on its own."""
    if not isinstance(steps, StepTable):
        write_row_groups(path, [steps_table(steps, kv_blocks_usable)])
        return
    bounds = row_bounds(steps.num_steps)
    write_row_groups(path, (steps_table(steps.window(COLUMNS, lo, hi), kv_blocks_usable, first_step=lo)
                            for lo, hi in zip(bounds[:-1], bounds[1:])))


def write_result(result, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_requests(out / "requests.parquet", result.requests, result.steps, result.emits)
    write_steps(out / "steps.parquet", result.steps, result.engine_config.num_gpu_blocks - 1)
    config = result.config.to_dict()
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    document = {
        "servesim_version": __version__,
        "seed": result.config.seed,
        "config": config,
        "engine": asdict(result.engine_config),
        "memory": result.memory.as_dict() if result.memory else None,
        "workload": result.workload.describe(),
        "meta": result.meta,
        "replicas": getattr(result, "replicas", None) or None,
        "summary": result.summary,
    }
    (out / "summary.json").write_text(json.dumps(_clean(document), indent=1, sort_keys=True) + "\n")
    return out


# What every reader may rely on; a directory lacking these comes from another servesim version or was cut short.
REQUIRED_REQUEST_COLUMNS = ("arrival_s", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "first_token_s", "finished_s",
                            "finish_reason", "itl_s")
REQUIRED_STEP_COLUMNS = ("start", "duration", "prefill_tokens", "decode_tokens", "num_seqs", "running", "waiting",
                         "kv_usage")


def _read_parquet(path: Path, required: tuple[str, ...], written_by: str) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ServesimError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise ServesimError(f"{path}: missing column(s) {', '.join(missing)}; it was written by servesim "
                            f"{written_by}, this is {__version__}: re-run it with this version")
    return table


def read_result(run_dir: str | Path, require_steps: bool = True) -> dict:
    """A run directory's files; a clear message if it is missing some or comes from another version.

    `steps` is None when steps.parquet is absent and require_steps is False (a measured run has no step log).
    """
    run = Path(run_dir)
    if not run.exists():
        raise ServesimError(f"run directory {str(run)!r} does not exist")
    if not run.is_dir():
        raise ServesimError(f"{run} is a file; expected a run directory (the output of `servesim simulate -o DIR`)")
    needed = RESULT_FILES[:3] if require_steps else RESULT_FILES[:2]
    missing = [name for name in needed if not (run / name).exists()]
    if missing:
        raise ServesimError(f"{run}: missing {', '.join(missing)}; expected the output of `servesim simulate -o` "
                            "or `servesim measure -o`")
    text = (run / "summary.json").read_text()
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as e:
        raise ServesimError(f"{run / 'summary.json'}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(summary, dict) or "summary" not in summary or "servesim_version" not in summary:
        raise ServesimError(f"{run / 'summary.json'}: not a servesim result (no 'summary' / 'servesim_version')")
    written_by = str(summary["servesim_version"])
    has_steps = (run / "steps.parquet").exists()
    return {
        "summary": summary,
        "requests": _read_parquet(run / "requests.parquet", REQUIRED_REQUEST_COLUMNS, written_by),
        "steps": _read_parquet(run / "steps.parquet", REQUIRED_STEP_COLUMNS, written_by) if has_steps else None,
    }
