"""`servesim sweep -c sweep.yaml`: a grid of simulations rather than an optimum, on the planner's executors
and results cache. The YAML holds any `simulate -c` settings plus a `grid:` mapping of settings to lists;
every combination is simulated (e.g. throughput over max_num_seqs x max_num_batched_tokens)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from servesim import __version__
from servesim.config import RunConfig, load_config, make_config, setting
from servesim.errors import ServesimError
from servesim.metrics.summary import SLO
from servesim.plan.cache import ResultCache
from servesim.plan.evaluate import Task
from servesim.plan.output import jsonable
from servesim.plan.probe import Probe, config_key, workload_fingerprint
from servesim.workload.build import build_workload


@dataclass
class Sweep:
    base: RunConfig
    grid: dict[str, list]  # setting -> values, in the file's order
    source: str

    def points(self) -> list[dict]:
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.grid.values())]


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    values = load_config(path, reserved=("grid",))
    text = path.read_text()
    raw = yaml.safe_load(text) or {}
    node = yaml.compose(text)
    lines = {}
    for k, v in node.value:
        if k.value == "grid" and isinstance(v, yaml.MappingNode):
            lines = {str(gk.value): gk.start_mark.line + 1 for gk, _ in v.value}
    grid_raw = raw.get("grid")
    if not isinstance(grid_raw, dict) or not grid_raw:
        raise ServesimError(f"{path}: a sweep needs a `grid:` mapping of settings to lists of values, e.g. "
                            "`grid: {max_num_seqs: [64, 128], max_num_batched_tokens: [2048, 8192]}`")
    grid: dict[str, list] = {}
    for name, options in grid_raw.items():
        where = f"{path}:{lines.get(str(name), '?')}"
        if not isinstance(options, list) or not options:
            raise ServesimError(f"{where}: grid entry {name!r} must be a non-empty list of values")
        key = None
        converted = []
        for value in options:
            key, v = setting(str(name), value, where)
            converted.append(v)
        grid[key] = converted
    return Sweep(make_config(values), grid, str(path))


def run_sweep(sweep: Sweep, executor, cache: ResultCache | None = None,
              progress: Callable[[int, int], None] | None = None) -> tuple[list[dict], list[Probe | None], bool]:
    """Simulate every grid point; returns (points, probes, interrupted). Points interrupted have no probe."""
    cache = cache or ResultCache(None)
    points = sweep.points()
    workloads: dict[str, tuple] = {}
    keys, probes = [], [None] * len(points)
    for i, values in enumerate(points):
        cfg = replace(sweep.base, **values)
        wkey = json.dumps({k: v for k, v in cfg.to_dict().items() if k in _WORKLOAD_FIELDS}, sort_keys=True)
        if wkey not in workloads:
            w = build_workload(cfg)
            workloads[wkey] = (w, workload_fingerprint(w))
        w, fp = workloads[wkey]
        key = config_key(cfg, fp)
        rate = 0.0 if w.closed_loop else float(cfg.qps or w.describe().get("rate_req_s") or 0.0)
        keys.append((key, rate))
        executor.submit(i, Task(key, cfg, w, rates=(rate,), rescale=False, cached=cache.get(key)))
    interrupted = False
    try:
        for n in range(len(points)):
            i, result = executor.next_done()
            key, rate = keys[i]
            cache.put(key, result.new)
            probes[i] = result.probes[rate]
            if progress:
                progress(n + 1, len(points))
    except KeyboardInterrupt:
        interrupted = True
        executor.terminate()
    return points, probes, interrupted


_WORKLOAD_FIELDS = ("workload", "trace", "trace_format", "limit", "time_scale", "isl", "osl", "lengths", "arrival",
                    "burstiness", "qps", "concurrency", "think_time", "requests", "duration", "seed")


def sweep_rows(sweep: Sweep, points: list[dict], probes: list[Probe | None]) -> list[dict]:
    slo = SLO(sweep.base.slo_ttft, sweep.base.slo_tpot)
    rows = []
    for values, probe in zip(points, probes):
        row = dict(values)
        row["done"] = probe is not None
        if probe is not None:
            row.update(probe.metrics)
            if slo.ttft is not None or slo.tpot is not None:
                row["slo_attainment"] = probe.attainment(slo)
                row["goodput_requests_per_s"] = probe.goodput(slo)
        rows.append(row)
    return rows


def write_sweep(sweep: Sweep, rows: list[dict], out_dir: str | Path, interrupted: bool) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"servesim_version": __version__, "seed": sweep.base.seed, "source": sweep.source,
           "config": sweep.base.to_dict(), "grid": sweep.grid, "interrupted": interrupted, "points": rows}
    (out_dir / "sweep.json").write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    clean = jsonable(rows)
    pq.write_table(pa.table({k: [r.get(k) for r in clean] for k in columns}), out_dir / "sweep.parquet")
