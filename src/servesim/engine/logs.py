"""Append-only logs the engine writes while it runs: one row per step, one row per run of consecutive tokens.

A decode span is logged as one record and expanded into its per-step rows only when the log is read, so
advancing a span costs O(1) log work. A request emits tokens at the ends of steps; while it decodes without
interruption those steps are consecutive, so its token times are stored as ranges of step indices, not one
value per token. Every TTFT and ITL is recovered exactly from the ranges and the step end times.
"""

from __future__ import annotations

from array import array

import numpy as np

STEP_COLUMNS = ("start", "duration", "num_tokens", "prefill_tokens", "decode_tokens", "num_seqs", "running",
                "waiting", "kv_blocks_used", "preempted")
FLOAT_COLUMNS = ("start", "duration")


class StepLog:
    """Steps as rows; a decode span as one compact record, expanded into rows only when the log is read.

    A span's step times are not stored: `span_durations(batch, kv_tokens, steps)` (the cost model's
    decode_span, bit-identical to its single steps) recomputes them, and the ends are the same sequential
    sums the clock made.
    """

    SPAN_FIELDS = ("first", "steps", "batch", "kv_tokens", "waiting", "kv_used_before", "running_after",
                   "kv_used_after", "slack_count")

    def __init__(self, block_size: int, span_durations):
        self.block_size = block_size
        self._span_durations = span_durations
        self._rows = [array("d" if name in FLOAT_COLUMNS else "q") for name in STEP_COLUMNS]
        self._spans = {name: array("q") for name in self.SPAN_FIELDS}
        self._span_start = array("d")
        self._slack = array("q")  # every span's requests' block slack, concatenated
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, *row) -> None:
        """One step: values in STEP_COLUMNS order."""
        for column, value in zip(self._rows, row):
            column.append(value)
        self._count += 1

    def append_span(self, start: float, steps: int, batch: int, kv_tokens: int, waiting: int, kv_used_before: int,
                    slack: list[int], running_after: int, kv_used_after: int) -> None:
        """`steps` pure-decode steps of `batch` requests from `start`, the first reading `kv_tokens` KV tokens.
        Request r takes a KV block after slack[r] + 1 steps and then every block_size steps."""
        values = (self._count, steps, batch, kv_tokens, waiting, kv_used_before, running_after, kv_used_after, len(slack))
        for name, value in zip(self.SPAN_FIELDS, values):
            self._spans[name].append(value)
        self._span_start.append(start)
        self._slack.extend(slack)
        self._count += steps

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {name: np.empty(self._count, dtype=np.float64 if name in FLOAT_COLUMNS else np.int64) for name in STEP_COLUMNS}
        is_row = np.ones(self._count, dtype=bool)
        if len(self._span_start):
            self._expand_spans(out, is_row)
        for name, column in zip(STEP_COLUMNS, self._rows):
            out[name][is_row] = np.frombuffer(column, dtype=out[name].dtype)
        return out

    def _expand_spans(self, out: dict[str, np.ndarray], is_row: np.ndarray) -> None:
        sp = {name: np.frombuffer(column, dtype=np.int64) for name, column in self._spans.items()}
        first, lengths, b = sp["first"], sp["steps"], sp["batch"]
        n = len(first)
        offsets = np.cumsum(lengths) - lengths
        span_of = np.repeat(np.arange(n), lengths)
        within = np.arange(int(lengths.sum())) - offsets[span_of]  # 0-based step within its span
        index = first[span_of] + within
        is_row[index] = False
        durations = np.concatenate([self._span_durations(int(bb), int(kv), int(k))
                                    for bb, kv, k in zip(b, sp["kv_tokens"], lengths)])
        # The clock's sums: each span's first step starts at its recorded start, then sequential additions.
        seeded = durations.copy()
        seeded[offsets] += np.frombuffer(self._span_start, dtype=np.float64)
        ends = np.empty_like(seeded)
        for lo, k in zip(offsets.tolist(), lengths.tolist()):
            np.cumsum(seeded[lo:lo + k], out=ends[lo:lo + k])
        starts = np.empty_like(ends)
        starts[1:] = ends[:-1]
        starts[offsets] = np.frombuffer(self._span_start, dtype=np.float64)
        out["start"][index] = starts
        out["duration"][index] = durations
        for name in ("num_tokens", "decode_tokens", "num_seqs", "running"):
            out[name][index] = b[span_of]
        out["waiting"][index] = sp["waiting"][span_of]
        out["prefill_tokens"][index] = 0
        out["preempted"][index] = 0
        last = first + lengths - 1
        out["running"][last] = sp["running_after"]
        # Blocks in use after step j (1-based) of a span: with (q, m) = divmod(j - 1, block_size), every request
        # took q blocks, plus one more if its slack <= m.
        bs = self.block_size
        counts = np.zeros((n, bs), dtype=np.int64)
        slack = np.frombuffer(self._slack, dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(n), sp["slack_count"]), slack), 1)
        at_most = np.cumsum(counts, axis=1)
        q, m = np.divmod(within, bs)
        out["kv_blocks_used"][index] = sp["kv_used_before"][span_of] + b[span_of] * q + at_most[span_of, m]
        out["kv_blocks_used"][last] = sp["kv_used_after"]


class EmitLog:
    """Token emissions as (request, first step, last step) ranges of consecutive steps."""

    def __init__(self, num_requests: int):
        self.last = [-10] * num_requests  # step of the latest token; negative before the first
        self.first = [0] * num_requests  # first step of the open range
        self.rid = array("q")
        self.lo = array("q")
        self.hi = array("q")

    def emit(self, rid: int, step: int) -> None:
        self.emit_range(rid, step, step)

    def emit_range(self, rid: int, lo: int, hi: int) -> None:
        last = self.last[rid]
        if last != lo - 1:
            if last >= 0:
                self._close(rid, last)
            self.first[rid] = lo
        self.last[rid] = hi

    def close(self, rid: int) -> None:
        if self.last[rid] >= 0:
            self._close(rid, self.last[rid])
            self.last[rid] = -10  # closed: a later emission (none should come) would open a new range

    def _close(self, rid: int, last: int) -> None:
        self.rid.append(rid)
        self.lo.append(self.first[rid])
        self.hi.append(last)

    def as_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.frombuffer(self.rid, dtype=np.int64).copy(), np.frombuffer(self.lo, dtype=np.int64).copy(),
                np.frombuffer(self.hi, dtype=np.int64).copy())
