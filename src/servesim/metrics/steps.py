"""A cluster's step table, kept as each replica's compact step log and expanded one replica at a time.

A million requests make ~26 million steps; as one table of 12 int64/float64 columns that is 2.5 GB. The metrics
only need a few columns at once, so they walk the replicas (`segments`) and keep whole-cluster arrays only for
the reductions that must see every step in one call (time-weighted means and np.sum over all steps, whose
rounding depends on the whole array: computing them in pieces would change the last bits of the summary).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

from servesim.engine.logs import FLOAT_COLUMNS, STEP_COLUMNS
from servesim.metrics.fixed_sum import FixedDot, fixed_dot

COLUMNS = STEP_COLUMNS + ("replica", "kv_blocks_usable")


class Segment(NamedTuple):
    replica: int
    usable: int  # the replica's usable KV blocks
    offset: int  # index of its first step in the cluster's table
    columns: dict[str, np.ndarray]


class StepTable(Mapping):
    """Every replica's steps, replica after replica (the order of the result files). Reading a column builds
    the whole table once (what writing steps.parquet needs); `segments` reads one replica at a time."""

    def __init__(self, parts: list[tuple[int, object, int]]):
        """`parts`: (replica index, its StepLog, its usable KV blocks), in table order."""
        self.parts = parts  # (replica index, StepLog, usable KV blocks)
        self.offsets = np.cumsum([0] + [len(log) for _, log, _ in parts])
        self._table: dict[str, np.ndarray] | None = None
        self.stats = None  # step_statistics' answer, once computed

    @property
    def num_steps(self) -> int:
        return int(self.offsets[-1])

    def segments(self, names=STEP_COLUMNS) -> Iterator[Segment]:
        for (replica, log, usable), offset in zip(self.parts, self.offsets):
            yield Segment(replica, usable, int(offset), log.as_numpy(names))

    def window(self, names, start: int, stop: int) -> dict[str, np.ndarray]:
        """Columns `names` (STEP_COLUMNS, "end", "replica", "kv_blocks_usable") of the cluster's steps start..stop-1,
        which may cross replicas; only the spans they overlap are expanded."""
        out = {name: np.empty(stop - start, dtype=np.float64 if name in FLOAT_COLUMNS + ("end",) else np.int64)
               for name in names}
        logged = [name for name in names if name not in ("replica", "kv_blocks_usable")]
        first = max(0, int(np.searchsorted(self.offsets, start, side="right")) - 1)
        for (replica, log, usable), offset in zip(self.parts[first:], self.offsets[first:].tolist()):
            if offset >= stop:
                break
            lo, hi = max(start, offset), min(stop, offset + len(log))
            rows = slice(lo - start, hi - start)
            log.as_numpy(logged, lo - offset, hi - offset, out={name: out[name][rows] for name in logged})
            if "replica" in out:
                out["replica"][rows] = replica
            if "kv_blocks_usable" in out:
                out["kv_blocks_usable"][rows] = usable
        return out

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in COLUMNS:
            raise KeyError(key)
        if self._table is None:
            self._table = self._build()
        return self._table[key]

    def __contains__(self, key) -> bool:
        return key in COLUMNS

    def __iter__(self):
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)

    def _build(self) -> dict[str, np.ndarray]:
        n = self.num_steps
        out = {name: np.empty(n, dtype=np.float64 if name in FLOAT_COLUMNS else np.int64) for name in COLUMNS}
        for seg in self.segments():
            rows = slice(seg.offset, seg.offset + len(seg.columns["start"]))
            for name, values in seg.columns.items():
                out[name][rows] = values
            out["replica"][rows] = seg.replica
            out["kv_blocks_usable"][rows] = seg.usable
        return out


def segments(steps, names, kv_blocks_usable=None) -> Iterator[Segment]:
    """A StepTable's replicas, or a plain dict of step columns as one segment."""
    if isinstance(steps, StepTable):
        yield from steps.segments(names)
        return
    usable = steps.get("kv_blocks_usable", kv_blocks_usable)
    replica = steps["replica"][0] if "replica" in steps and len(steps["replica"]) else 0
    columns = dict(steps)
    if "end" in names and "end" not in columns:
        columns["end"] = steps["start"] + steps["duration"]
    yield Segment(int(replica), usable, 0, columns)


def num_steps(steps) -> int:
    return steps.num_steps if isinstance(steps, StepTable) else len(steps["start"])


class StepStats(NamedTuple):
    engine: dict  # the summary's "engine" section
    replicas: dict[int, dict]  # per replica: steps, busy_s, kv_usage_peak, kv_usage_mean


def _last_end(steps, step: int) -> float:
    """A replica's last step end, its latest (a replica's steps follow one another), read without its other ends.
    A plain dict of columns is one segment that may interleave replicas: its latest end is the maximum."""
    if isinstance(steps, StepTable):
        return float(steps.window(("end",), step, step + 1)["end"][0])
    return float(np.max(steps["start"] + steps["duration"]))


class StepStatsPass:
    """step_statistics fed one replica's columns at a time, so that another pass over the replicas (the ITL pass)
    can compute it from the columns it reads anyway instead of expanding every decode span a second time. Every
    sum over the whole cluster is a FixedDot, exact in pieces, so nothing is kept as long as the step table."""

    NAMES = ("duration", "kv_blocks_used", "running", "waiting", "num_tokens")

    def __init__(self, steps, kv_blocks_usable=None):
        self.steps = steps
        self.kv_blocks_usable = kv_blocks_usable
        self.total = FixedDot()  # the durations' sum
        self.weighted = {name: FixedDot() for name in ("kv_usage", "running", "num_tokens")}  # each times the durations
        self.replicas: dict[int, dict] = {}
        self.peaks = {"running": 0, "waiting": 0, "end": -np.inf, "kv_usage": 0.0}

    def add(self, seg: Segment) -> None:
        cols, peaks = seg.columns, self.peaks
        mine = cols["duration"]
        self.total.add(mine)
        usage = cols["kv_blocks_used"] / np.maximum(1, seg.usable)
        for name, values in (("kv_usage", usage), ("running", cols["running"]), ("num_tokens", cols["num_tokens"])):
            self.weighted[name].add(values, mine)
        busy = float(mine.sum())
        usage_peak = float(usage.max()) if len(mine) else 0.0
        self.replicas[seg.replica] = {"steps": len(mine), "busy_s": busy, "kv_usage_peak": usage_peak,
                                      "kv_usage_mean": fixed_dot(usage, mine) / busy if busy > 0 else 0.0}
        if len(mine):
            peaks["running"] = max(peaks["running"], int(cols["running"].max()))
            peaks["waiting"] = max(peaks["waiting"], int(cols["waiting"].max()))
            peaks["kv_usage"] = max(peaks["kv_usage"], usage_peak)
            peaks["end"] = max(peaks["end"], _last_end(self.steps, seg.offset + len(mine) - 1))

    def finish(self) -> StepStats:
        """The statistics of every segment added (kept on a StepTable, so the summary and the cluster summary
        share them)."""
        n, peaks = num_steps(self.steps), self.peaks
        total = self.total.value()

        def time_weighted(name: str) -> float | None:
            return self.weighted[name].value() / total if total > 0 else None

        engine = {
            "steps": n,
            "busy_s": total,
            "kv_usage_peak": peaks["kv_usage"] if n else 0.0,
            "kv_usage_mean": time_weighted("kv_usage"),
            "running_mean": time_weighted("running"),
            "running_peak": peaks["running"],
            "waiting_peak": peaks["waiting"],
            "mean_batch_tokens": time_weighted("num_tokens"),
            "last_step_end_s": peaks["end"] if n else 0.0,
        }
        stats = StepStats(engine, self.replicas)
        if isinstance(self.steps, StepTable):
            self.steps.stats = stats
        return stats


def step_pass(steps, kv_blocks_usable=None) -> StepStatsPass | None:
    """A pass to feed, or None when the table already has its statistics."""
    if isinstance(steps, StepTable) and steps.stats is not None:
        return None
    return StepStatsPass(steps, kv_blocks_usable)


def step_statistics(steps, kv_blocks_usable=None) -> StepStats:
    """Busy time, KV usage, batch sizes and queue peaks over all steps and per replica, in one pass over the
    replicas (none when a StepTable has them already)."""
    stats = step_pass(steps, kv_blocks_usable)
    if stats is None:
        return steps.stats
    for seg in segments(steps, StepStatsPass.NAMES, kv_blocks_usable):
        stats.add(seg)
    return stats.finish()
