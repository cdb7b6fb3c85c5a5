"""Request state as parallel arrays indexed by request id: no object per request on the hot path."""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from servesim.columns import COMPILED, array_column, codes_column, counts_column, int_column, times_column, zeros_column
from servesim.engine.kv_cache import RequestBlocks
from servesim.engine.logs import new_emit_cursors
from servesim.vec_types import i64, vec

NOT_YET = -1.0  # a time that has not happened

# Final: compiled, constants in C, not a module-dict lookup at every use (here and where they are imported).
WAITING: Final = 0
RUNNING: Final = 1
FINISHED: Final = 2
REJECTED: Final = 3


def _lengths(values) -> vec[i64]:
    """A column of request lengths. Run from the sources, a list whose equal values share one int object: 8 bytes
    a request instead of ~36, since lengths repeat across a million requests. Compiled, a vec (8 bytes each)."""
    if COMPILED:
        return array_column(np.ascontiguousarray(values, dtype=np.int64))
    ints = np.asarray(values, dtype=np.int64).tolist()
    canonical: dict[Any, Any] = {}
    return int_column([canonical.setdefault(v, v) for v in ints])


class RequestTable:
    """Static request facts from the workload plus the dynamic counters the scheduler moves.

    `num_tokens` of a request is prompt + outputs so far; it is `prompt_len[r] + num_output[r]`.
    """

    def __init__(self, prompt_len, output_len, prefix_ids=None, prefix_block_tokens: int = 512,
                 priority=None, client=None):
        n = len(prompt_len)
        self.n = n
        self.prompt_len = _lengths(prompt_len)
        self.max_tokens = _lengths(output_len)
        self.prefix_ids = prefix_ids  # per request: None or a sequence of chained prefix-block ids
        self.prefix_block_tokens = prefix_block_tokens
        self.priority = list(priority) if priority is not None else None
        self.client = list(client) if client is not None else None
        self.num_output = zeros_column(n)
        self.num_computed = zeros_column(n)
        self.status = codes_column(n)
        self.num_preemptions = counts_column(n)
        self.cached_tokens = counts_column(n)  # prefix-cache hit at first admission
        self.hit_tokens = counts_column(n)  # prefix-cache hits over all admissions (resumes too)
        self.arrival = times_column(n, NOT_YET)
        self.first_scheduled = times_column(n, NOT_YET)
        self.first_token = times_column(n, NOT_YET)
        self.finished = times_column(n, NOT_YET)
        self.finish_reason = codes_column(n)  # 0 none, 1 length (max_tokens), 2 max_model_len, 3 rejected
        self._emit_cursors: tuple[vec[i64], vec[i64]] | None = None
        self._blocks: RequestBlocks | None = None

    def emit_cursors(self) -> tuple[vec[i64], vec[i64]]:
        """Each request's open run of emitted tokens, one pair of lists for every replica serving this table:
        a request emits on one replica of it only."""
        if self._emit_cursors is None:
            self._emit_cursors = new_emit_cursors(self.n)
        return self._emit_cursors

    def blocks(self) -> RequestBlocks:
        """Each request's KV block counts, one set for every replica serving this table (like the cursors)."""
        if self._blocks is None:
            self._blocks = RequestBlocks(self.n)
        return self._blocks

    # Block hashes: a shared block is named by the chained prefix id covering its last token and the token
    # offset into that prefix block, so two requests share exactly the blocks whose every token is shared.

    def shared_tokens(self, rid: int) -> int:
        ids = self.prefix_ids[rid] if self.prefix_ids is not None else None
        if not ids:
            return 0
        return min(len(ids) * self.prefix_block_tokens, self.prompt_len[rid])

    def block_key_fn(self, block_size: int):
        ids_of = self.prefix_ids
        g = self.prefix_block_tokens
        shared_tokens = self.shared_tokens

        def key(rid: int, i: int):
            end = (i + 1) * block_size
            if ids_of is not None and end <= shared_tokens(rid):
                j = (end - 1) // g
                return (ids_of[rid][j], end - j * g)
            return (rid, i, None)  # a request's own block: a 3-tuple never equals a 2-tuple prefix key

        return key

    def shared_blocks_fn(self, block_size: int):
        """Leading blocks of a request that others may share, or None when no request has a shared prefix."""
        if self.prefix_ids is None:
            return None
        shared_tokens = self.shared_tokens
        return lambda rid: shared_tokens(rid) // block_size

    def outputs_as_numpy(self) -> dict[str, np.ndarray]:
        """The per-request results as numpy views over the table's own columns, not copies (a million requests'
        columns are ~90 MB): read them once the run is over, and copy one before changing it if the table
        is still in use."""
        def view(column, dtype):
            return np.frombuffer(column, dtype=dtype)

        return {
            "prompt_len": np.asarray(self.prompt_len, dtype=np.int64),
            "output_len": np.asarray(self.num_output, dtype=np.int64),
            "max_tokens": np.asarray(self.max_tokens, dtype=np.int64),
            "arrival": view(self.arrival, np.float64),
            "first_scheduled": view(self.first_scheduled, np.float64),
            "first_token": view(self.first_token, np.float64),
            "finished": view(self.finished, np.float64),
            "preemptions": view(self.num_preemptions, np.int64),
            "cached_tokens": view(self.cached_tokens, np.int64),
            "hit_tokens": view(self.hit_tokens, np.int64),
            "finish_reason": view(self.finish_reason, np.uint8),
        }
