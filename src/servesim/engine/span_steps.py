"""A StepLog's rows, decode spans expanded step by step in one sequential pass: the compiled core's way to read a
log (`StepLog.as_numpy` uses it when compiled; the numpy expansion in logs.py is the reference and the way without
the compiled core).

Compiled, a step here costs a few native float operations and appends to unboxed `vec` columns, which numpy then
reads without a copy; the numpy expansion needs a dozen array passes over the span steps (the step ends alone,
sequential sums, take one fancy-indexed pass per position within a span). Each value is computed by the same
operations in the same order as there, so the columns are equal bit for bit (tests/test_metrics_scale.py).

Imported only by the compiled core: `librt` (mypyc's runtime library) comes with the `compile` extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from librt.vecs import append, vec
from mypy_extensions import i32, i64, u8

from servesim.engine.log_columns import RowColumns, SpanColumns
from servesim.perf.calibrated import CalibratedModel


def as_columns(rows: dict[str, np.ndarray], spans: dict[str, np.ndarray],
               slack: np.ndarray) -> tuple[RowColumns, SpanColumns]:
    """Records given as numpy columns (a StepLog's packed records) as the vec columns `expand` reads."""
    row_columns = RowColumns()
    row_columns.start = vec[float](rows["start"].tolist())
    row_columns.duration = vec[float](rows["duration"].tolist())
    row_columns.num_tokens = vec[i32](rows["num_tokens"].tolist())
    row_columns.prefill_tokens = vec[i32](rows["prefill_tokens"].tolist())
    row_columns.decode_tokens = vec[i32](rows["decode_tokens"].tolist())
    row_columns.num_seqs = vec[i32](rows["num_seqs"].tolist())
    row_columns.running = vec[i32](rows["running"].tolist())
    row_columns.waiting = vec[i32](rows["waiting"].tolist())
    row_columns.kv_blocks_used = vec[i32](rows["kv_blocks_used"].tolist())
    row_columns.preempted = vec[i32](rows["preempted"].tolist())
    span_columns = SpanColumns()
    span_columns.first = vec[i64](spans["first"].tolist())
    span_columns.kv_tokens = vec[i64](spans["kv_tokens"].tolist())
    span_columns.start = vec[float](spans["start"].tolist())
    span_columns.steps = vec[i32](spans["steps"].tolist())
    span_columns.batch = vec[i32](spans["batch"].tolist())
    span_columns.waiting = vec[i32](spans["waiting"].tolist())
    span_columns.kv_used_before = vec[i32](spans["kv_used_before"].tolist())
    span_columns.running_after = vec[i32](spans["running_after"].tolist())
    span_columns.kv_used_after = vec[i32](spans["kv_used_after"].tolist())
    span_columns.slack = vec[u8](slack.tolist())
    return row_columns, span_columns


class Columns:
    """The output: the columns asked for, each with room for every step (the others stay empty)."""

    def __init__(self, capacity: i64, want: set[str]):
        def room(name: str) -> i64:
            return capacity if name in want else 0

        self.start = vec[float](capacity=room("start"))
        self.duration = vec[float](capacity=room("duration"))
        self.end = vec[float](capacity=room("end"))
        self.num_tokens = vec[i64](capacity=room("num_tokens"))
        self.prefill_tokens = vec[i64](capacity=room("prefill_tokens"))
        self.decode_tokens = vec[i64](capacity=room("decode_tokens"))
        self.num_seqs = vec[i64](capacity=room("num_seqs"))
        self.running = vec[i64](capacity=room("running"))
        self.waiting = vec[i64](capacity=room("waiting"))
        self.kv_blocks_used = vec[i64](capacity=room("kv_blocks_used"))
        self.preempted = vec[i64](capacity=room("preempted"))


def expand(names: list[str], num_steps: i64, rows: RowColumns, spans: SpanColumns, block_size: i64,
           cost: object) -> dict[str, Any]:
    """Columns `names` of all `num_steps` steps, from the log's single steps `rows` and decode `spans`."""
    want = set(names)
    out = Columns(num_steps, want)
    w_start, w_duration, w_end = "start" in want, "duration" in want, "end" in want
    w_tokens, w_prefill, w_decode = "num_tokens" in want, "prefill_tokens" in want, "decode_tokens" in want
    w_seqs, w_running, w_waiting = "num_seqs" in want, "running" in want, "waiting" in want
    w_kv, w_preempted = "kv_blocks_used" in want, "preempted" in want
    timed = w_start or w_duration or w_end
    calibrated = cost if isinstance(cost, CalibratedModel) else None
    taken = vec[i64]([0] * block_size)  # per slack value: the span's requests that take a block at that step mod bs
    row: i64 = 0
    step: i64 = 0
    slack_at: i64 = 0
    slack = spans.slack
    for s in range(len(spans.first)):
        first: i64 = spans.first[s]
        if step < first:
            _copy_rows(out, rows, row, first - step, want)
            row += first - step
            step = first
        length: i64 = i64(spans.steps[s])
        b: i64 = i64(spans.batch[s])
        if timed:
            _span_times(out, calibrated, cost, b, spans.kv_tokens[s], length, spans.start[s], w_start, w_duration,
                        w_end)
        last: i64 = length - 1
        if w_tokens or w_decode or w_seqs:
            for j in range(length):
                if w_tokens:
                    out.num_tokens = append(out.num_tokens, b)
                if w_decode:
                    out.decode_tokens = append(out.decode_tokens, b)
                if w_seqs:
                    out.num_seqs = append(out.num_seqs, b)
        if w_prefill or w_preempted:
            for j in range(length):
                if w_prefill:
                    out.prefill_tokens = append(out.prefill_tokens, 0)
                if w_preempted:
                    out.preempted = append(out.preempted, 0)
        if w_running:
            for j in range(last):
                out.running = append(out.running, b)
            out.running = append(out.running, i64(spans.running_after[s]))
        if w_waiting:
            waiting: i64 = i64(spans.waiting[s])
            for j in range(length):
                out.waiting = append(out.waiting, waiting)
        if w_kv:
            # Step j takes a block for each request whose slack is j mod block_size (as StepLog._expand_some).
            for i in range(slack_at, slack_at + b):
                taken[i64(slack[i])] += 1
            used: i64 = i64(spans.kv_used_before[s])
            for j in range(last):
                used += taken[j % block_size]
                out.kv_blocks_used = append(out.kv_blocks_used, used)
            out.kv_blocks_used = append(out.kv_blocks_used, i64(spans.kv_used_after[s]))
            for i in range(slack_at, slack_at + b):
                taken[i64(slack[i])] = 0
        slack_at += b
        step += length
    if step < num_steps:
        _copy_rows(out, rows, row, num_steps - step, want)
    return {name: getattr(out, name) for name in names}


def _span_times(out: Columns, calibrated: CalibratedModel | None, cost: object, b: i64, kv_tokens: i64, length: i64,
                start: float, w_start: bool, w_duration: bool, w_end: bool) -> None:
    """A span's step durations, starts and ends: end_j = end_{j-1} + d_j from the span's start, as the clock
    summed them."""
    form = calibrated.decode_form(b) if calibrated is not None else None
    durations: list[float] = []
    if form is None:  # the cost model's own numpy span: the values StepLog._span_durations reads
        durations = getattr(cost, "decode_span")(b, kv_tokens, length).tolist()
    now = start
    if form is not None:  # CalibratedModel.decode_span_until's loop, op for op
        serial, base, weight, host, micro = form.serial, form.base, form.weight, form.host, form.micro
        starve, split, tile = form.starve, form.split, form.tile
        t2 = tile * tile
        t4, t3 = t2 * t2, t2 * tile
        kv = float(kv_tokens)
        step = float(b)
        for j in range(length):
            k = kv / micro
            k2 = k * k
            k = (k2 * k2 + t4) / (k2 * k + t3)
            d = serial + max(base + weight * (k + starve * k * split / (split + k)), host)
            if w_start:
                out.start = append(out.start, now)
            now += d
            if w_duration:
                out.duration = append(out.duration, d)
            if w_end:
                out.end = append(out.end, now)
            kv += step
        return
    for d in durations:
        if w_start:
            out.start = append(out.start, now)
        now += d
        if w_duration:
            out.duration = append(out.duration, d)
        if w_end:
            out.end = append(out.end, now)


def _copy_rows(out: Columns, rows: RowColumns, row: i64, count: i64, want: set[str]) -> None:
    """`count` single steps from row `row` on."""
    stop = row + count
    if "start" in want:
        out.start = _floats(out.start, rows.start, row, stop)
    if "end" in want:
        column = out.end
        for i in range(row, stop):
            column = append(column, rows.start[i] + rows.duration[i])
        out.end = column
    if "duration" in want:
        out.duration = _floats(out.duration, rows.duration, row, stop)
    # One line a column: a column chosen by name would be a generic attribute (every append a Python call).
    if "num_tokens" in want:
        out.num_tokens = _ints(out.num_tokens, rows.num_tokens, row, stop)
    if "prefill_tokens" in want:
        out.prefill_tokens = _ints(out.prefill_tokens, rows.prefill_tokens, row, stop)
    if "decode_tokens" in want:
        out.decode_tokens = _ints(out.decode_tokens, rows.decode_tokens, row, stop)
    if "num_seqs" in want:
        out.num_seqs = _ints(out.num_seqs, rows.num_seqs, row, stop)
    if "running" in want:
        out.running = _ints(out.running, rows.running, row, stop)
    if "waiting" in want:
        out.waiting = _ints(out.waiting, rows.waiting, row, stop)
    if "kv_blocks_used" in want:
        out.kv_blocks_used = _ints(out.kv_blocks_used, rows.kv_blocks_used, row, stop)
    if "preempted" in want:
        out.preempted = _ints(out.preempted, rows.preempted, row, stop)


def _ints(column: vec[i64], values: vec[i32], row: i64, stop: i64) -> vec[i64]:
    for i in range(row, stop):
        column = append(column, i64(values[i]))
    return column


def _floats(column: vec[float], values: vec[float], row: i64, stop: i64) -> vec[float]:
    for i in range(row, stop):
        column = append(column, values[i])
    return column
