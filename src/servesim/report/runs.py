"""Run directories as the report and the trace see them: numpy columns, the summary, and what is optional.

A simulated run has a step log; a measured one (`servesim measure`) has only requests. Columns a later
servesim adds (`replica`) are used where present and never required.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from servesim.metrics.io import read_result
from servesim.metrics.latency import distribution

REQUEST_COLUMNS = ("arrival_s", "output_tokens", "ttft_s", "tpot_s", "e2e_s", "queue_s", "first_token_s",
                   "finished_s", "preemptions", "replica")
STEP_COLUMNS = ("start", "duration", "num_tokens", "prefill_tokens", "decode_tokens", "num_seqs", "running", "waiting",
                "kv_usage", "preempted", "replica")


@dataclass
class Run:
    name: str
    path: Path
    doc: dict  # summary.json: summary, config, servesim_version, seed, meta...
    requests: dict[str, np.ndarray]  # REQUEST_COLUMNS present in the file, plus `completed`
    itl_offsets: np.ndarray  # request r's ITLs are itl_values[itl_offsets[r]:itl_offsets[r+1]]
    itl_values: np.ndarray
    steps: dict[str, np.ndarray] | None  # None for a measured run

    @cached_property
    def summary(self) -> dict:
        """summary.json's summary; for a file without latency percentiles (a measured run), the same numbers
        computed from requests.parquet, so real and simulated runs fill the same table."""
        own = self.doc.get("summary") or {}
        return own if own.get("latency_s") else {**own, **request_summary(self.requests, self.itl_values)}

    @property
    def config(self) -> dict:
        return self.doc.get("config") or {}

    @property
    def kind(self) -> str:
        return "measured" if self.doc.get("kind") == "measured" or self.steps is None else "simulated"

    def replica_steps(self) -> list[tuple[int | None, dict[str, np.ndarray]]]:
        """The step log per replica, each in time order; one entry (replica None) without a replica column or
        with a single replica (every simulate run writes the column)."""
        if self.steps is None:
            return []
        if "replica" not in self.steps or len(np.unique(self.steps["replica"])) <= 1:
            return [(None, self.steps)]
        out = []
        for r in np.unique(self.steps["replica"]).tolist():
            mine = self.steps["replica"] == r
            order = np.argsort(self.steps["start"][mine], kind="stable")
            out.append((int(r), {k: v[mine][order] for k, v in self.steps.items()}))
        return out

    def slo(self) -> tuple[float | None, float | None]:
        """The run's SLOs: from its summary, or its config where the summary has none (nothing completed)."""
        slo = self.summary.get("slo")
        if slo:
            return slo.get("ttft_s"), slo.get("tpot_s")
        return self.config.get("slo_ttft"), self.config.get("slo_tpot")

    def description(self) -> str:
        meta = self.doc.get("meta") or {}
        model = (meta.get("model") or {}).get("name") or self.config.get("model", "?")
        device = meta.get("device") or self.config.get("gpu", "?")
        workload = (self.doc.get("workload") or {}).get("name") or self.config.get("workload") or "?"
        return f"{model} on {device} TP={self.config.get('tp', '?')}, {workload}"


def request_summary(req: dict[str, np.ndarray], itl_values: np.ndarray) -> dict:
    """Latency distributions, throughput and counts from the per-request columns alone."""
    done = req["completed"]
    latency = {name: distribution(req[f"{name}_s"][done]) for name in ("ttft", "tpot", "e2e", "queue")
               if f"{name}_s" in req}
    latency["itl"] = distribution(itl_values)
    out = {"requests": {"total": int(len(done)), "completed": int(done.sum()), "rejected": int((~done).sum())},
           "latency_s": latency, "throughput": {}}
    if done.any():
        duration = float(req["finished_s"][done].max() - req["arrival_s"][done].min())
        if duration > 0:
            out["throughput"] = {"duration_s": duration, "requests_per_s": int(done.sum()) / duration,
                                 "output_tokens_per_s": float(req["output_tokens"][done].sum()) / duration}
    return out


def _numpy(table: pa.Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        if name in table.column_names:
            out[name] = table.column(name).to_numpy(zero_copy_only=False)
    return out


def _itl(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    column = table.column("itl_s").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
    return offsets, values


def load_run(path: str | Path, name: str | None = None) -> Run:
    files = read_result(path, require_steps=False)
    req_table = files["requests"]
    requests = _numpy(req_table, REQUEST_COLUMNS)
    requests["completed"] = req_table.column("finish_reason").to_numpy(zero_copy_only=False) != "rejected"
    offsets, values = _itl(req_table)
    steps = _numpy(files["steps"], STEP_COLUMNS) if files["steps"] is not None else None
    return Run(name or Path(path).name, Path(path), files["summary"], requests, offsets, values, steps)


def run_names(paths: list[Path]) -> list[str]:
    """Legend labels: the directory names, with as many parent folders as it takes to tell them apart."""
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{n} ({i})" for i, n in enumerate(names)]


def load_runs(paths: list[str | Path]) -> list[Run]:
    paths = [Path(p) for p in paths]
    return [load_run(p, n) for p, n in zip(paths, run_names(paths))]
