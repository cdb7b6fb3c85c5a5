"""Append-only logs the engine writes while it runs: one row per step, one row per run of consecutive tokens.

A request emits tokens at the ends of steps. While it decodes without interruption those steps are
consecutive, so its token times are stored as ranges of step indices, not as one value per token; every
TTFT and ITL is recovered exactly from the ranges and the step end times.
"""

from __future__ import annotations

from array import array

import numpy as np

STEP_COLUMNS = {
    "start": "d",
    "duration": "d",
    "num_tokens": "q",
    "prefill_tokens": "q",
    "decode_tokens": "q",
    "num_seqs": "q",
    "running": "q",
    "waiting": "q",
    "kv_blocks_used": "q",
    "preempted": "q",
}


class StepLog:
    def __init__(self):
        for name, code in STEP_COLUMNS.items():
            setattr(self, name, array(code))

    def __len__(self) -> int:
        return len(self.start)

    def append(self, start, duration, num_tokens, prefill_tokens, decode_tokens, num_seqs, running, waiting,
               kv_blocks_used, preempted) -> None:
        self.start.append(start)
        self.duration.append(duration)
        self.num_tokens.append(num_tokens)
        self.prefill_tokens.append(prefill_tokens)
        self.decode_tokens.append(decode_tokens)
        self.num_seqs.append(num_seqs)
        self.running.append(running)
        self.waiting.append(waiting)
        self.kv_blocks_used.append(kv_blocks_used)
        self.preempted.append(preempted)

    def extend(self, **columns) -> None:
        """Append many rows at once; each column a numpy array or a scalar repeated over the rows."""
        rows = len(columns["start"])
        for name, code in STEP_COLUMNS.items():
            value = columns[name]
            dtype = np.float64 if code == "d" else np.int64
            column = np.broadcast_to(np.asarray(value, dtype=dtype), (rows,))
            getattr(self, name).frombytes(np.ascontiguousarray(column).tobytes())

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {}
        for name, code in STEP_COLUMNS.items():
            out[name] = np.frombuffer(getattr(self, name), dtype=np.float64 if code == "d" else np.int64).copy()
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
        last = self.last[rid]
        if last != step - 1:
            if last >= 0:
                self._close(rid, last)
            self.first[rid] = step
        self.last[rid] = step

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
