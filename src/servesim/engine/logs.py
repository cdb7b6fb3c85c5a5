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
    def __init__(self, block_size: int):
        self.block_size = block_size
        self._rows = [array("d" if name in FLOAT_COLUMNS else "q") for name in STEP_COLUMNS]
        self._spans: list[tuple] = []  # the arguments of append_span, after the index of the first step
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def append(self, *row) -> None:
        """One step: values in STEP_COLUMNS order."""
        for column, value in zip(self._rows, row):
            column.append(value)
        self._count += 1

    def append_span(self, start: float, durations: np.ndarray, ends: np.ndarray, batch: int, waiting: int,
                    kv_used_before: int, slack: list[int], running_after: int, kv_used_after: int) -> None:
        """k pure-decode steps of `batch` requests; request r takes a KV block after slack[r] + 1 steps and
        then every block_size steps."""
        self._spans.append((self._count, start, durations, ends, batch, waiting, kv_used_before, slack,
                            running_after, kv_used_after))
        self._count += len(durations)

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {name: np.empty(self._count, dtype=np.float64 if name in FLOAT_COLUMNS else np.int64) for name in STEP_COLUMNS}
        is_row = np.ones(self._count, dtype=bool)
        if self._spans:
            self._expand_spans(out, is_row)
        for name, column in zip(STEP_COLUMNS, self._rows):
            out[name][is_row] = np.frombuffer(column, dtype=out[name].dtype)
        return out

    def _expand_spans(self, out: dict[str, np.ndarray], is_row: np.ndarray) -> None:
        first, start, durations, ends, batch, waiting, used_before, slack, running_after, used_after = zip(*self._spans)
        first = np.asarray(first, dtype=np.int64)
        lengths = np.asarray([len(d) for d in durations], dtype=np.int64)
        span_of = np.repeat(np.arange(len(first)), lengths)
        offsets = np.cumsum(lengths) - lengths
        index = np.repeat(first, lengths) + (np.arange(int(lengths.sum())) - np.repeat(offsets, lengths))
        is_row[index] = False
        all_ends = np.concatenate(ends)
        starts = all_ends.copy()
        starts[1:] = all_ends[:-1]
        starts[offsets] = start  # each span's first step starts where the span started
        out["start"][index] = starts
        out["duration"][index] = np.concatenate(durations)
        b = np.asarray(batch, dtype=np.int64)
        for name, value in (("num_tokens", b), ("decode_tokens", b), ("num_seqs", b), ("running", b),
                            ("waiting", np.asarray(waiting, dtype=np.int64))):
            out[name][index] = value[span_of]
        out["prefill_tokens"][index] = 0
        out["preempted"][index] = 0
        last = first + lengths - 1
        out["running"][last] = running_after
        # Blocks in use after step j (1-based) of a span: with (q, m) = divmod(j - 1, block_size), every request
        # took q blocks, plus one more if its slack <= m.
        bs = self.block_size
        slack_len = np.asarray([len(x) for x in slack], dtype=np.int64)
        counts = np.zeros((len(first), bs), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(first)), slack_len), np.concatenate([np.asarray(x, dtype=np.int64) for x in slack])), 1)
        at_most = np.cumsum(counts, axis=1)
        j = index - np.repeat(first, lengths)  # 0-based step within the span, i.e. j - 1 above
        q, m = np.divmod(j, bs)
        used = np.asarray(used_before, dtype=np.int64)[span_of] + b[span_of] * q + at_most[span_of, m]
        out["kv_blocks_used"][index] = used
        out["kv_blocks_used"][last] = used_after


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
