"""Append-only logs the engine writes while it runs: one row per step, one row per run of consecutive tokens.

A decode span is logged as one record and expanded into its per-step rows only when the log is read, so
advancing a span costs O(1) log work. A request emits tokens at the ends of steps; while it decodes without
interruption those steps are consecutive, so its token times are stored as ranges of step indices, not one
value per token. Every TTFT and ITL is recovered exactly from the ranges and the step end times.
"""

from __future__ import annotations

from array import array
from struct import Struct
from typing import Any, Callable

import numpy as np

from servesim.columns import COMPILED, counts_column, filled_column, push_int, zeros_column
from servesim.engine.log_columns import RowColumns, SpanColumns
from servesim.vec_types import i64, vec

STEP_COLUMNS = ("start", "duration", "num_tokens", "prefill_tokens", "decode_tokens", "num_seqs", "running",
                "waiting", "kv_blocks_used", "preempted")
FLOAT_COLUMNS = ("start", "duration")
SPAN_STEPS_PER_PASS = 1 << 18  # span steps expanded per numpy pass when the log is read
FEW_SPANS_LEFT = 32  # when summing span ends position by position, spans left to finish one by one
SPAN_FIELDS = ("steps", "batch", "waiting", "kv_used_before", "running_after", "kv_used_after")

# Run from the sources, one packed record per single step and per span, appended with one struct.pack: an
# array.append per value costs a method call and a format parse each (about a tenth of a run). The numpy dtypes
# read them back. The compiled core stores vec columns instead (log_columns).
STEP_RECORD = Struct("<2d8i")
STEP_DTYPE = np.dtype([(name, "<f8" if name in FLOAT_COLUMNS else "<i4") for name in STEP_COLUMNS])
SPAN_RECORD = Struct("<qqd6i")  # first step, KV tokens that step reads, start, SPAN_FIELDS
SPAN_DTYPE = np.dtype([("first", "<i8"), ("kv_tokens", "<i8"), ("start", "<f8")]
                      + [(name, "<i4") for name in SPAN_FIELDS])


class StepLog:
    """Steps as rows; a decode span as one compact record, expanded into rows only when the log is read.

    A span's step durations are recomputed on read by the cost model (`decode_times`, else `decode_span`), which
    gives them bit for bit as single steps would; its step ends are then the same sequential sums the clock made
    (start + d0, + d1, ...), so they are rebuilt too instead of stored. A step costs 48 bytes as a row and about
    3 as part of a span (its share of the span record and of its requests' block slack).
    """

    def __init__(self, block_size: int, cost):
        self.block_size = block_size
        self._cost = cost
        # Compiled, vec columns (slack one byte a request); else packed records, below. The compiled core also reads
        # a whole log in one sequential pass (span_steps) instead of the numpy expansion.
        self._columnar = COMPILED and block_size <= 256
        self._row_columns: RowColumns | None = RowColumns() if self._columnar else None
        self._span_columns: SpanColumns | None = SpanColumns() if self._columnar else None
        self._rows = array("B")  # STEP_RECORDs
        self._spans = array("B")  # SPAN_RECORDs
        self._slack = array("B" if block_size <= 256 else "i")  # every span's requests' block slack, concatenated
        self._count = 0
        # Bound once: compiled, a method call on a Python object looks the method up by name every time.
        self._pack_row: Callable[..., bytes] = STEP_RECORD.pack
        self._pack_span: Callable[..., bytes] = SPAN_RECORD.pack
        self._put_row: Callable[[bytes], None] = self._rows.frombytes
        self._put_span: Callable[[bytes], None] = self._spans.frombytes
        self._slack_in_bytes = self._slack.typecode == "B"
        self._put_slack: Callable[[bytes], None] = self._slack.frombytes

    def __len__(self) -> int:
        return self._count

    @property
    def num_spans(self) -> int:
        spans = self._span_columns
        return len(spans) if spans is not None else len(self._spans) // SPAN_RECORD.size

    @property
    def num_rows(self) -> int:
        """Single steps (each one call of the policy's schedule()); the rest of the steps are in spans."""
        rows = self._row_columns
        return len(rows) if rows is not None else len(self._rows) // STEP_RECORD.size

    def append(self, start: float, duration: float, num_tokens: int, prefill_tokens: int, decode_tokens: int,
               num_seqs: int, running: int, waiting: int, kv_blocks_used: int, preempted: int) -> None:
        """One step, its STEP_COLUMNS (named, not *row: compiled, a star call builds a tuple and parses it)."""
        rows = self._row_columns
        if rows is not None:
            rows.append(start, duration, num_tokens, prefill_tokens, decode_tokens, num_seqs, running, waiting,
                        kv_blocks_used, preempted)
        else:
            self._put_row(self._pack_row(start, duration, num_tokens, prefill_tokens, decode_tokens, num_seqs,
                                         running, waiting, kv_blocks_used, preempted))
        self._count += 1

    def append_span(self, start: float, ends: vec[float], batch: int, kv_tokens: int, waiting: int,
                    kv_used_before: int, slack: vec[i64], running_after: int, kv_used_after: int) -> None:
        """Pure-decode steps of `batch` requests from `start`, ending at `ends`, the first reading `kv_tokens`
        KV tokens. Request r takes a KV block after slack[r] + 1 steps and then every block_size steps."""
        steps: int = len(ends)  # an int (a vec's len is an i64, which SpanColumns' i32 fields refuse)
        assert len(slack) == batch, "a span's slack has one entry per request in its batch"
        spans = self._span_columns
        if spans is not None:
            spans.append(self._count, kv_tokens, start, steps, batch, waiting, kv_used_before, running_after,
                         kv_used_after, slack)
            self._count += steps
            return
        self._put_span(self._pack_span(self._count, kv_tokens, start, steps, batch, waiting, kv_used_before,
                                       running_after, kv_used_after))
        if self._slack_in_bytes:
            self._put_slack(bytes(slack))  # one C loop, not a parse per value
        else:
            self._slack.extend(slack)
        self._count += steps

    def as_numpy(self, names=STEP_COLUMNS, start: int = 0, stop: int | None = None,
                 out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The step table's columns `names` (all by default) for steps start..stop-1 (all by default), one row per
        step; "end" may be asked for too (start + duration, what the metrics call a step's end), without building
        the other two. A window expands only the spans it overlaps, so reading a log in windows keeps memory
        bounded by the window. `out`: arrays (float64 / int64, stop - start long) to fill instead of new ones."""
        stop = self._count if stop is None else stop
        if self._columnar and out is None and start == 0 and stop == self._count and self.num_spans:
            return self._expand_in_order(names)
        n = stop - start
        if out is None:
            out = {name: np.empty(n, dtype=np.float64 if name in FLOAT_COLUMNS + ("end",) else np.int64)
                   for name in names}
        is_row = np.ones(n, dtype=bool)
        span_steps_before = self._expand_spans(out, is_row, start, stop) if self.num_spans else 0
        first_row = start - span_steps_before  # single-step rows before the window
        rows = slice(first_row, first_row + int(np.count_nonzero(is_row)))
        columns: dict[str, Any] = {name: column[rows] for name, column in self._row_records().items()}
        for name in out:
            out[name][is_row] = columns["start"] + columns["duration"] if name == "end" else columns[name]
        return out

    def _row_records(self) -> dict[str, np.ndarray]:
        """The single steps' STEP_COLUMNS, numpy views of the stored records."""
        rows = self._row_columns
        if rows is not None:
            return rows.as_numpy()
        records = np.frombuffer(self._rows, dtype=STEP_DTYPE)
        return {name: records[name] for name in STEP_COLUMNS}

    def _span_records(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The spans' fields (SPAN_DTYPE's names) and their requests' slack, numpy views of the stored records."""
        spans = self._span_columns
        if spans is not None:
            return spans.as_numpy()
        records = np.frombuffer(self._spans, dtype=SPAN_DTYPE)
        slack = np.frombuffer(self._slack, dtype=np.uint8 if self._slack_in_bytes else np.int32)
        return {name: records[name] for name in ("first", "kv_tokens", "start") + SPAN_FIELDS}, slack

    def _expand_in_order(self, names) -> dict[str, np.ndarray]:
        """as_numpy of the whole log by span_steps.expand (the compiled core's one sequential pass); the same
        columns bit for bit."""
        from servesim.engine import span_steps

        rows, spans = self._row_columns, self._span_columns
        if rows is None or spans is None:  # packed records (run from the sources: tests compare the two reads)
            rows, spans = span_steps.as_columns(self._row_records(), *self._span_records())
        columns = span_steps.expand(list(names), self._count, rows, spans, self.block_size, self._cost)
        return {name: np.frombuffer(column, dtype=np.float64 if name in FLOAT_COLUMNS + ("end",) else np.int64)
                for name, column in columns.items()}

    def _expand_spans(self, out: dict[str, np.ndarray], is_row: np.ndarray, start: int, stop: int) -> int:
        """Writes the spans overlapping steps start..stop-1, a batch of about SPAN_STEPS_PER_PASS steps at a time so
        the temporaries stay that small; returns how many span steps come before `start`."""
        spans, slack = self._span_records()
        steps_through = np.cumsum(spans["steps"], dtype=np.int64)  # span steps up to and including each span
        slack_through = np.cumsum(spans["batch"], dtype=np.int64)  # slack entries likewise (one per request)
        first = spans["first"]
        lo = int(np.searchsorted(first + spans["steps"], start, side="right"))  # first span ending after `start`
        n = int(np.searchsorted(first, stop, side="left"))  # spans from here on begin at or after `stop`
        before = (int(steps_through[lo - 1]) if lo else 0) + (max(0, start - int(first[lo])) if lo < n else 0)
        while lo < n:
            done = int(steps_through[lo - 1]) if lo else 0
            hi = min(n, max(lo + 1, int(np.searchsorted(steps_through, done + SPAN_STEPS_PER_PASS, side="right"))))
            used = slice(int(slack_through[lo - 1]) if lo else 0, int(slack_through[hi - 1]))
            self._expand_some(out, is_row, start, {name: field[lo:hi] for name, field in spans.items()}, slack[used])
            lo = hi
        return before

    def _expand_some(self, out, is_row, window_start, spans, slack) -> None:
        sp = {name: spans[name].astype(np.int64) for name in SPAN_FIELDS}
        first, kv_tokens, start = spans["first"], spans["kv_tokens"], spans["start"]
        lengths, b = sp["steps"], sp["batch"]
        n = len(first)
        offsets = np.cumsum(lengths) - lengths
        span_of = np.repeat(np.arange(n), lengths)
        within = np.arange(len(span_of)) - offsets[span_of]  # 0-based step within its span
        index = first[span_of] + within - window_start  # row in the window
        last = first + lengths - 1 - window_start
        size = len(is_row)
        cut = first[0] < window_start or last[-1] >= size  # the window's edge cuts its first or last span
        if cut:
            inside, last_inside = (index >= 0) & (index < size), (last >= 0) & (last < size)
            index, last = index[inside], last[last_inside]

        def put(name, values, at_last=False):
            if cut and np.ndim(values):
                values = values[last_inside if at_last else inside]
            out[name][last if at_last else index] = values

        is_row[index] = False
        if {"start", "duration", "end"} & out.keys():
            durations = self._span_durations(b, kv_tokens, lengths, span_of, within)
            if "duration" in out:
                put("duration", durations)
            if {"start", "end"} & out.keys():  # the ends: a sequential sum over each span, only when asked for
                ends = self._span_ends(start, durations, lengths, offsets)
                if "end" in out:  # start + duration: for a span step, the previous end + duration = its end
                    put("end", ends)
                if "start" in out:
                    ends[1:] = ends[:-1]  # each step starts when the one before it ends ...
                    ends[offsets] = start  # ... and a span's first at the span's start
                    put("start", ends)
                del ends
            del durations
        batch_names = [name for name in ("num_tokens", "decode_tokens", "num_seqs", "running") if name in out]
        if batch_names:
            b_of = b[span_of]  # gathered once for every column that is the batch size
            for name in batch_names:
                put(name, b_of)
        if "running" in out:
            put("running", sp["running_after"], at_last=True)
        if "waiting" in out:
            put("waiting", sp["waiting"][span_of])
        for name in ("prefill_tokens", "preempted"):
            if name in out:
                put(name, 0)
        if "kv_blocks_used" in out:
            # Step j (0-based) of a span takes a block for each of its requests whose slack is j mod block_size;
            # the blocks in use after it are those before the span plus the span's takes so far, a running total.
            bs = self.block_size
            cells = np.repeat(np.arange(n) * bs, b) + slack  # (span, slack) as one index: bincount, not np.add.at
            takes = np.bincount(cells, minlength=n * bs)[span_of * bs + within % bs]
            taken = np.cumsum(takes)  # over all the pass's span steps: each span subtracts what came before it
            before = sp["kv_used_before"] - (taken[offsets] - takes[offsets])
            put("kv_blocks_used", before[span_of] + taken)
            put("kv_blocks_used", sp["kv_used_after"], at_last=True)

    @staticmethod
    def _span_ends(start, durations: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Each span step's end, summed in the clock's order (end_0 = start + d_0, end_j = end_{j-1} + d_j), one
        position within the spans at a time over all spans at least that long; once only a few spans are that
        long, each of them is finished by one sequential np.add.accumulate (the same additions, fewer calls)."""
        ends = np.empty_like(durations)
        ends[offsets] = start + durations[offsets]
        by_length = np.argsort(-lengths, kind="stable")  # spans longest first
        heads, longest_first = offsets[by_length], lengths[by_length]
        ascending = np.sort(lengths)
        for j in range(1, int(lengths.max())):
            live = len(heads) - int(np.searchsorted(ascending, j, side="right"))  # spans longer than j
            if live <= FEW_SPANS_LEFT:
                for head, length in zip(heads[:live].tolist(), longest_first[:live].tolist()):
                    run = durations[head + j - 1: head + length].copy()
                    run[0] = ends[head + j - 1]  # the end before step j, then step j's duration onwards
                    np.add.accumulate(run, out=run)
                    ends[head + j: head + length] = run[1:]
                break
            at = heads[:live] + j
            ends[at] = ends[at - 1] + durations[at]
        return ends

    def _span_durations(self, batch, kv_tokens, lengths, span_of, within) -> np.ndarray:
        """Every span step's duration: step j of a span reads kv_tokens + j * batch KV tokens."""
        times = getattr(self._cost, "decode_times", None)
        if times is None:
            return np.concatenate([self._cost.decode_span(int(b), int(kv), int(k))
                                   for b, kv, k in zip(batch, kv_tokens, lengths)])
        b_of = batch[span_of]
        kv = (kv_tokens[span_of] + b_of * within).astype(np.float64)
        out = np.empty(len(kv))
        # One call per batch size, over the steps of its spans: the spans are grouped by size (far fewer than
        # steps to sort), then each group's steps listed span by span.
        by_size = np.argsort(batch, kind="stable")
        grouped = lengths[by_size]
        before = np.cumsum(grouped) - grouped  # steps ahead of each span in the grouped order
        order = np.repeat((np.cumsum(lengths) - lengths)[by_size] - before, grouped) + np.arange(len(kv))
        sizes, first = np.unique(batch[by_size], return_index=True)
        bounds = np.append(before[first], len(order))
        for size, lo, hi in zip(sizes.tolist(), bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            out[rows] = times(size, kv[rows])
        return out


def new_emit_cursors(num_requests: int) -> tuple[vec[i64], vec[i64]]:
    # Not array("q"): the compiled engine reads a column item natively, an array item through a generic call
    # that boxes a new int.
    return filled_column(num_requests, -10), zeros_column(num_requests)


class EmitLog:
    """Token emissions as (request, first step, last step) ranges of consecutive steps."""

    def __init__(self, num_requests: int, cursors: tuple[vec[i64], vec[i64]] | None = None):
        """`cursors`: the (last, first) columns below, shared by the replicas serving one request table (a request
        emits on one of them), so that each replica does not keep a pair as long as the whole workload."""
        if cursors is None:
            cursors = new_emit_cursors(num_requests)
        self.last, self.first = cursors  # step of the latest token (negative before the first); first step of the open range
        # Closed ranges, three ints each (request, first step, last step) in one flat column: compiled, a vec
        # appended natively; from the sources, an array("q"), 8 bytes a value.
        self._ranges = counts_column(0)

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
            self._ranges = push_int(push_int(push_int(self._ranges, rid), self.first[rid]), last)

    def close(self, rid: int) -> None:
        """The request is done: end its open range and reset its cursors (small shared ints again)."""
        self.close_range(rid)
        self.last[rid] = -10  # closed: a later emission (none should come) would open a new range
        self.first[rid] = 0

    def as_numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat: Any = self._ranges  # a vec or an array: both expose their buffer
        ranges = np.frombuffer(flat, dtype=np.int64).reshape(-1, 3)
        return ranges[:, 0].copy(), ranges[:, 1].copy(), ranges[:, 2].copy()
