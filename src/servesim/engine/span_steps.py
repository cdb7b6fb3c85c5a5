"""A whole StepLog read in one sequential pass, decode spans expanded step by step: the compiled core's way to read
a log (`StepLog.as_numpy` uses it when compiled; the numpy expansion in logs.py is the reference and the way
without the compiled core).

Compiled, a step here costs a few native float operations and stores into preallocated `vec` columns, which numpy
then reads without a copy; the numpy expansion needs a dozen array passes over the span steps (the step ends
alone, sequential sums, take one fancy-indexed pass per position within a span). Each value is computed by the
same operations in the same order as there, so the columns are equal bit for bit (tests/test_metrics_scale.py).

Needs librt (mypyc's runtime library, with the `compile` extra): logs.py imports it only where librt is there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from librt.vecs import vec
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


class Wanted:
    """Which columns are asked for, as native flags (a set lookup per copied run of rows adds up)."""

    def __init__(self, want: set[str]):
        self.start, self.duration, self.end = "start" in want, "duration" in want, "end" in want
        self.num_tokens, self.prefill_tokens = "num_tokens" in want, "prefill_tokens" in want
        self.decode_tokens, self.num_seqs = "decode_tokens" in want, "num_seqs" in want
        self.running, self.waiting = "running" in want, "waiting" in want
        self.kv_blocks_used, self.preempted = "kv_blocks_used" in want, "preempted" in want


class Columns:
    """The output: the columns asked for, each as long as the log (the others empty), filled by index."""

    def __init__(self, n: i64, wanted: Wanted):
        self.start = vec[float]([0.0] * _size(n, wanted.start))
        self.duration = vec[float]([0.0] * _size(n, wanted.duration))
        self.end = vec[float]([0.0] * _size(n, wanted.end))
        self.num_tokens = vec[i64]([0] * _size(n, wanted.num_tokens))
        self.prefill_tokens = vec[i64]([0] * _size(n, wanted.prefill_tokens))
        self.decode_tokens = vec[i64]([0] * _size(n, wanted.decode_tokens))
        self.num_seqs = vec[i64]([0] * _size(n, wanted.num_seqs))
        self.running = vec[i64]([0] * _size(n, wanted.running))
        self.waiting = vec[i64]([0] * _size(n, wanted.waiting))
        self.kv_blocks_used = vec[i64]([0] * _size(n, wanted.kv_blocks_used))
        self.preempted = vec[i64]([0] * _size(n, wanted.preempted))


def _size(n: i64, wanted: bool) -> i64:
    return n if wanted else 0


def expand(names: list[str], num_steps: i64, rows: RowColumns, spans: SpanColumns, block_size: i64,
           cost: object) -> dict[str, Any]:
    """Columns `names` of all `num_steps` steps, from the log's single steps `rows` and decode `spans`."""
    wanted = Wanted(set(names))
    out = Columns(num_steps, wanted)
    # Locals: a vec is a (length, buffer) pair, so a store through a local fills the column `out` holds.
    num_tokens, decode_tokens, num_seqs = out.num_tokens, out.decode_tokens, out.num_seqs
    running, waiting, kv_blocks_used = out.running, out.waiting, out.kv_blocks_used
    w_tokens, w_decode, w_seqs = wanted.num_tokens, wanted.decode_tokens, wanted.num_seqs
    w_running, w_waiting, w_kv = wanted.running, wanted.waiting, wanted.kv_blocks_used
    timed = wanted.start or wanted.duration or wanted.end
    calibrated = cost if isinstance(cost, CalibratedModel) else None
    taken = vec[i64]([0] * block_size)  # per slack value: the span's requests that take a block at that step mod bs
    row: i64 = 0
    step: i64 = 0
    slack_at: i64 = 0
    slack = spans.slack
    for s in range(len(spans.first)):
        first: i64 = spans.first[s]
        if step < first:
            _copy_rows(out, rows, row, step, first - step, wanted)
            row += first - step
            step = first
        length: i64 = i64(spans.steps[s])
        b: i64 = i64(spans.batch[s])
        stop = step + length
        if timed:
            _span_times(out, wanted, calibrated, cost, b, spans.kv_tokens[s], step, stop, spans.start[s])
        # Prefill tokens and preemptions are 0 in a span: the columns' initial zeros. One loop a column: a branch
        # per column inside one loop costs more than the stores.
        if w_tokens:
            for i in range(step, stop):
                num_tokens[i] = b
        if w_decode:
            for i in range(step, stop):
                decode_tokens[i] = b
        if w_seqs:
            for i in range(step, stop):
                num_seqs[i] = b
        if w_running:
            for i in range(step, stop - 1):
                running[i] = b
            running[stop - 1] = i64(spans.running_after[s])
        if w_waiting:
            queued: i64 = i64(spans.waiting[s])
            for i in range(step, stop):
                waiting[i] = queued
        if w_kv:
            # Step j takes a block for each request whose slack is j mod block_size (as StepLog._expand_some).
            for i in range(slack_at, slack_at + b):
                taken[i64(slack[i])] += 1
            used: i64 = i64(spans.kv_used_before[s])
            j: i64 = 0  # (i - step) % block_size, kept by counting: a remainder per step costs more than the step
            for i in range(step, stop - 1):
                used += taken[j]
                kv_blocks_used[i] = used
                j += 1
                if j == block_size:
                    j = 0
            kv_blocks_used[stop - 1] = i64(spans.kv_used_after[s])
            for i in range(slack_at, slack_at + b):
                taken[i64(slack[i])] = 0
        slack_at += b
        step = stop
    if step < num_steps:
        _copy_rows(out, rows, row, step, num_steps - step, wanted)
    return {name: getattr(out, name) for name in names}


def _span_times(out: Columns, wanted: Wanted, calibrated: CalibratedModel | None, cost: object, b: i64,
                kv_tokens: i64, first: i64, stop: i64, start: float) -> None:
    """Steps first..stop-1 of a span: durations, starts and ends, end_j = end_{j-1} + d_j from the span's start,
    as the clock summed them."""
    form = calibrated.decode_form(b) if calibrated is not None else None
    starts, durations, ends = out.start, out.duration, out.end
    w_start, w_duration, w_end = wanted.start, wanted.duration, wanted.end
    now = start
    if form is not None:  # CalibratedModel.decode_span_until's loop, op for op
        serial, base, weight, host = form.serial, form.base, form.weight, form.host
        starve, split, tile = form.starve, form.split, form.tile
        t2 = tile * tile
        t4, t3 = t2 * t2, t2 * tile
        kv = float(kv_tokens)
        grow = float(b)
        for i in range(first, stop):
            k = kv  # kv / micro: one microbatch (see DecodeForm)
            k2 = k * k
            k = (k2 * k2 + t4) / (k2 * k + t3)
            d = serial + max(base + weight * (k + starve * k * split / (split + k)), host)
            if w_start:
                starts[i] = now
            now += d
            if w_duration:
                durations[i] = d
            if w_end:
                ends[i] = now
            kv += grow
        return
    # The cost model's own numpy span: the values StepLog._span_durations reads.
    span: list[float] = getattr(cost, "decode_span")(b, kv_tokens, stop - first).tolist()
    i = first
    for d in span:
        if w_start:
            starts[i] = now
        now += d
        if w_duration:
            durations[i] = d
        if w_end:
            ends[i] = now
        i += 1


def _copy_rows(out: Columns, rows: RowColumns, row: i64, step: i64, count: i64, want: Wanted) -> None:
    """`count` single steps from row `row` on, into the columns from step `step` on."""
    # One block a column: a column chosen by name would be a generic attribute (every store a Python call).
    if want.start:
        _floats(out.start, rows.start, row, step, count)
    if want.duration:
        _floats(out.duration, rows.duration, row, step, count)
    if want.end:
        ends, starts, durations = out.end, rows.start, rows.duration
        for i in range(count):
            ends[step + i] = starts[row + i] + durations[row + i]
    if want.num_tokens:
        _ints(out.num_tokens, rows.num_tokens, row, step, count)
    if want.prefill_tokens:
        _ints(out.prefill_tokens, rows.prefill_tokens, row, step, count)
    if want.decode_tokens:
        _ints(out.decode_tokens, rows.decode_tokens, row, step, count)
    if want.num_seqs:
        _ints(out.num_seqs, rows.num_seqs, row, step, count)
    if want.running:
        _ints(out.running, rows.running, row, step, count)
    if want.waiting:
        _ints(out.waiting, rows.waiting, row, step, count)
    if want.kv_blocks_used:
        _ints(out.kv_blocks_used, rows.kv_blocks_used, row, step, count)
    if want.preempted:
        _ints(out.preempted, rows.preempted, row, step, count)


def _ints(column: vec[i64], values: vec[i32], row: i64, step: i64, count: i64) -> None:
    for i in range(count):
        column[step + i] = i64(values[row + i])


def _floats(column: vec[float], values: vec[float], row: i64, step: i64, count: i64) -> None:
    for i in range(count):
        column[step + i] = values[row + i]
