"""A StepLog's records as unboxed `vec` columns: how the compiled core stores them.

Compiled, an append here is a native store per field; packing a record with struct boxes each field first (a
few thousand instructions per span). Run from the sources, one struct.pack per record is the cheaper way, and
StepLog keeps its packed records instead (librt, which provides vec, may be absent there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from servesim.vec_types import append, i32, i64, u8, vec


class RowColumns:
    """Single steps, one column per STEP_COLUMN (logs.STEP_DTYPE's types)."""

    def __init__(self) -> None:
        self.start = vec[float]()
        self.duration = vec[float]()
        self.num_tokens = vec[i32]()
        self.prefill_tokens = vec[i32]()
        self.decode_tokens = vec[i32]()
        self.num_seqs = vec[i32]()
        self.running = vec[i32]()
        self.waiting = vec[i32]()
        self.kv_blocks_used = vec[i32]()
        self.preempted = vec[i32]()

    def append(self, start: float, duration: float, num_tokens: i32, prefill_tokens: i32, decode_tokens: i32,
               num_seqs: i32, running: i32, waiting: i32, kv_blocks_used: i32, preempted: i32) -> None:
        self.start = append(self.start, start)
        self.duration = append(self.duration, duration)
        self.num_tokens = append(self.num_tokens, num_tokens)
        self.prefill_tokens = append(self.prefill_tokens, prefill_tokens)
        self.decode_tokens = append(self.decode_tokens, decode_tokens)
        self.num_seqs = append(self.num_seqs, num_seqs)
        self.running = append(self.running, running)
        self.waiting = append(self.waiting, waiting)
        self.kv_blocks_used = append(self.kv_blocks_used, kv_blocks_used)
        self.preempted = append(self.preempted, preempted)

    def __len__(self) -> int:
        return len(self.start)

    def as_numpy(self) -> dict[str, np.ndarray]:
        """Read-only numpy views of the columns (no copy)."""
        floats = {"start": self.start, "duration": self.duration}
        ints = {"num_tokens": self.num_tokens, "prefill_tokens": self.prefill_tokens,
                "decode_tokens": self.decode_tokens, "num_seqs": self.num_seqs, "running": self.running,
                "waiting": self.waiting, "kv_blocks_used": self.kv_blocks_used, "preempted": self.preempted}
        out = {name: _view(column, np.float64) for name, column in floats.items()}
        out.update({name: _view(column, np.int32) for name, column in ints.items()})
        return out


class SpanColumns:
    """Decode spans, one column per field of logs.SPAN_DTYPE, and their requests' block slack concatenated (one
    byte each: StepLog stores spans this way only for block sizes up to 256)."""

    def __init__(self) -> None:
        self.first = vec[i64]()
        self.kv_tokens = vec[i64]()
        self.start = vec[float]()
        self.steps = vec[i32]()
        self.batch = vec[i32]()
        self.waiting = vec[i32]()
        self.kv_used_before = vec[i32]()
        self.running_after = vec[i32]()
        self.kv_used_after = vec[i32]()
        self.slack = vec[u8]()

    def append(self, first: i64, kv_tokens: i64, start: float, steps: i32, batch: i32, waiting: i32,
               kv_used_before: i32, running_after: i32, kv_used_after: i32, slack: vec[i64]) -> None:
        self.first = append(self.first, first)
        self.kv_tokens = append(self.kv_tokens, kv_tokens)
        self.start = append(self.start, start)
        self.steps = append(self.steps, steps)
        self.batch = append(self.batch, batch)
        self.waiting = append(self.waiting, waiting)
        self.kv_used_before = append(self.kv_used_before, kv_used_before)
        self.running_after = append(self.running_after, running_after)
        self.kv_used_after = append(self.kv_used_after, kv_used_after)
        column = self.slack
        for s in slack:
            column = append(column, u8(s))
        self.slack = column

    def __len__(self) -> int:
        return len(self.first)

    def as_numpy(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Read-only numpy views of the span fields (no copy), and of the slack."""
        wide = {"first": (self.first, np.int64), "kv_tokens": (self.kv_tokens, np.int64),
                "start": (self.start, np.float64)}
        out = {name: _view(column, dtype) for name, (column, dtype) in wide.items()}
        narrow = {"steps": self.steps, "batch": self.batch, "waiting": self.waiting,
                  "kv_used_before": self.kv_used_before, "running_after": self.running_after,
                  "kv_used_after": self.kv_used_after}
        out.update({name: _view(column, np.int32) for name, column in narrow.items()})
        return out, _view(self.slack, np.uint8)


def _view(column: Any, dtype: Any) -> np.ndarray:
    """A read-only numpy array over a vec's buffer."""
    return np.frombuffer(column, dtype=dtype)
