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

from librt.vecs import append, vec
from mypy_extensions import i64

from servesim.perf.calibrated import CalibratedModel


class SpanRecords:
    """The span records' fields as lists (one numpy .tolist() each), and their requests' block slack."""

    def __init__(self, first: list[int], kv_tokens: list[int], start: list[float], steps: list[int],
                 batch: list[int], waiting: list[int], kv_used_before: list[int], running_after: list[int],
                 kv_used_after: list[int], slack: bytes):
        self.first = first
        self.kv_tokens = kv_tokens
        self.start = start
        self.steps = steps
        self.batch = batch
        self.waiting = waiting
        self.kv_used_before = kv_used_before
        self.running_after = running_after
        self.kv_used_after = kv_used_after
        self.slack = slack


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


def expand(names: list[str], num_steps: i64, rows: dict[str, list], spans: SpanRecords, block_size: i64,
           cost: object) -> dict[str, Any]:
    """Columns `names` of all `num_steps` steps; `rows`: the single steps' values of those columns ("end" is
    built from "start" and "duration", which it needs), in step order."""
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
        length: i64 = spans.steps[s]
        b: i64 = spans.batch[s]
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
            out.running = append(out.running, spans.running_after[s])
        if w_waiting:
            waiting: i64 = spans.waiting[s]
            for j in range(length):
                out.waiting = append(out.waiting, waiting)
        if w_kv:
            # Step j takes a block for each request whose slack is j mod block_size (as StepLog._expand_some).
            for i in range(slack_at, slack_at + b):
                taken[slack[i]] += 1
            used: i64 = spans.kv_used_before[s]
            for j in range(last):
                used += taken[j % block_size]
                out.kv_blocks_used = append(out.kv_blocks_used, used)
            out.kv_blocks_used = append(out.kv_blocks_used, spans.kv_used_after[s])
            for i in range(slack_at, slack_at + b):
                taken[slack[i]] = 0
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


def _copy_rows(out: Columns, rows: dict[str, list], row: i64, count: i64, want: set[str]) -> None:
    """`count` single steps from row `row` on."""
    stop = row + count
    if "start" in want or "end" in want:
        starts: list[float] = rows["start"]
        durations: list[float] = rows["duration"]
        for i in range(row, stop):
            t: float = starts[i]
            if "start" in want:
                out.start = append(out.start, t)
            if "end" in want:
                d: float = durations[i]
                out.end = append(out.end, t + d)
    if "duration" in want:
        out.duration = _floats(out.duration, rows["duration"], row, stop)
    # One line a column: a column chosen by name would be a generic attribute (every append a Python call).
    if "num_tokens" in want:
        out.num_tokens = _ints(out.num_tokens, rows["num_tokens"], row, stop)
    if "prefill_tokens" in want:
        out.prefill_tokens = _ints(out.prefill_tokens, rows["prefill_tokens"], row, stop)
    if "decode_tokens" in want:
        out.decode_tokens = _ints(out.decode_tokens, rows["decode_tokens"], row, stop)
    if "num_seqs" in want:
        out.num_seqs = _ints(out.num_seqs, rows["num_seqs"], row, stop)
    if "running" in want:
        out.running = _ints(out.running, rows["running"], row, stop)
    if "waiting" in want:
        out.waiting = _ints(out.waiting, rows["waiting"], row, stop)
    if "kv_blocks_used" in want:
        out.kv_blocks_used = _ints(out.kv_blocks_used, rows["kv_blocks_used"], row, stop)
    if "preempted" in want:
        out.preempted = _ints(out.preempted, rows["preempted"], row, stop)


def _ints(column: vec[i64], values: list[int], row: i64, stop: i64) -> vec[i64]:
    for i in range(row, stop):
        column = append(column, values[i])
    return column


def _floats(column: vec[float], values: list[float], row: i64, stop: i64) -> vec[float]:
    for i in range(row, stop):
        column = append(column, values[i])
    return column
