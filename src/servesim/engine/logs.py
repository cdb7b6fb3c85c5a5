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

    A span's step ends are kept (the clock's own sums); its step durations are recomputed on read by the cost
    model (`decode_times`, else `decode_span`), which gives them bit for bit as single steps would.
    """

    SPAN_FIELDS = ("first", "steps", "batch", "kv_tokens", "waiting", "kv_used_before", "running_after",
                   "kv_used_after", "slack_count")

    def __init__(self, block_size: int, cost):
        self.block_size = block_size
        self._cost = cost
        self._rows = [array("d" if name in FLOAT_COLUMNS else "q") for name in STEP_COLUMNS]
        self._span_fields = array("q")  # SPAN_FIELDS of each span, interleaved
        self._span_start = array("d")
        self._span_ends = array("d")  # every span step's end, concatenated
        self._slack = array("q")  # every span's requests' block slack, concatenated
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, *row) -> None:
        """One step: values in STEP_COLUMNS order."""
        for column, value in zip(self._rows, row):
            column.append(value)
        self._count += 1

    def append_span(self, start: float, ends: list[float], batch: int, kv_tokens: int, waiting: int,
                    kv_used_before: int, slack: list[int], running_after: int, kv_used_after: int) -> None:
        """Pure-decode steps of `batch` requests from `start`, ending at `ends`, the first reading `kv_tokens`
        KV tokens. Request r takes a KV block after slack[r] + 1 steps and then every block_size steps."""
        steps = len(ends)
        self._span_fields.extend((self._count, steps, batch, kv_tokens, waiting, kv_used_before, running_after,
                                  kv_used_after, len(slack)))
        self._span_start.append(start)
        self._span_ends.extend(ends)
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
        fields = np.frombuffer(self._span_fields, dtype=np.int64).reshape(-1, len(self.SPAN_FIELDS))
        sp = {name: np.ascontiguousarray(fields[:, i]) for i, name in enumerate(self.SPAN_FIELDS)}
        first, lengths, b = sp["first"], sp["steps"], sp["batch"]
        n = len(first)
        offsets = np.cumsum(lengths) - lengths
        span_of = np.repeat(np.arange(n), lengths)
        within = np.arange(int(lengths.sum())) - offsets[span_of]  # 0-based step within its span
        index = first[span_of] + within
        is_row[index] = False
        durations = self._span_durations(b, sp["kv_tokens"], lengths, span_of, within)
        ends = np.frombuffer(self._span_ends, dtype=np.float64)
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


    def _span_durations(self, batch, kv_tokens, lengths, span_of, within) -> np.ndarray:
        """Every span step's duration: step j of a span reads kv_tokens + j * batch KV tokens."""
        times = getattr(self._cost, "decode_times", None)
        if times is None:
            return np.concatenate([self._cost.decode_span(int(b), int(kv), int(k))
                                   for b, kv, k in zip(batch, kv_tokens, lengths)])
        b_of = batch[span_of]
        kv = (kv_tokens[span_of] + b_of * within).astype(np.float64)
        out = np.empty(len(kv))
        order = np.argsort(b_of, kind="stable")  # one call per batch size
        sizes, starts = np.unique(b_of[order], return_index=True)
        bounds = np.append(starts, len(order))
        for size, lo, hi in zip(sizes.tolist(), bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            out[rows] = times(size, kv[rows])
        return out


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
        if self.last[rid] != lo - 1:
            self.close_range(rid)
            self.first[rid] = lo
        self.last[rid] = hi

    def close_range(self, rid: int) -> None:
        """End the request's open range, if it has one (a gap in its tokens follows)."""
        last = self.last[rid]
        if last >= 0:
            self._close(rid, last)

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
