"""A workload: the requests (lengths, shared prefixes) and how they arrive (open-loop times or closed-loop clients)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from servesim.errors import ServesimError


@dataclass
class Workload:
    name: str
    prompt_len: np.ndarray  # int64
    output_len: np.ndarray  # int64
    arrival: np.ndarray | None = None  # float64 seconds, non-decreasing; None for closed loop
    concurrency: int = 0  # closed loop: this many clients, each sends its next request when the last finishes
    think_time: float = 0.0  # closed loop: pause between a response and the client's next request
    prefix_ids: list | None = None  # per request: chained ids of its shareable prefix blocks, or None
    prefix_block_tokens: int = 512
    source: dict = field(default_factory=dict)  # how it was made: preset, trace path, parameters, seed
    client: np.ndarray | None = None  # per request: index into client_names
    priority: np.ndarray | None = None  # per request: priority class, smaller = more important
    client_names: list[str] | None = None

    def __post_init__(self):
        self.prompt_len = np.asarray(self.prompt_len, dtype=np.int64)
        self.output_len = np.asarray(self.output_len, dtype=np.int64)
        n = len(self.prompt_len)
        if n == 0:
            raise ServesimError(f"workload {self.name!r} has no requests")
        if len(self.output_len) != n:
            raise ServesimError("prompt and output length arrays differ in size")
        if (self.prompt_len <= 0).any() or (self.output_len <= 0).any():
            raise ServesimError(f"workload {self.name!r}: prompt and output lengths must be >= 1 token")
        if self.arrival is None:
            if self.concurrency <= 0:
                raise ServesimError("a workload needs arrival times or a closed-loop concurrency >= 1")
        else:
            self.arrival = np.asarray(self.arrival, dtype=np.float64)
            if len(self.arrival) != n:
                raise ServesimError("arrival array differs in size from the lengths")
            if n > 1 and (np.diff(self.arrival) < 0).any():
                order = np.argsort(self.arrival, kind="stable")
                self._reorder(order)

    def _reorder(self, order: np.ndarray) -> None:
        self.prompt_len = self.prompt_len[order]
        self.output_len = self.output_len[order]
        self.arrival = self.arrival[order]
        if self.prefix_ids is not None:
            self.prefix_ids = [self.prefix_ids[i] for i in order]
        if self.client is not None:
            self.client = self.client[order]
        if self.priority is not None:
            self.priority = self.priority[order]

    def __len__(self) -> int:
        return len(self.prompt_len)

    @property
    def closed_loop(self) -> bool:
        return self.arrival is None

    def describe(self) -> dict:
        out = {
            "name": self.name,
            "requests": len(self),
            "prompt_len_mean": float(self.prompt_len.mean()),
            "output_len_mean": float(self.output_len.mean()),
        }
        if self.arrival is not None:
            span = float(self.arrival[-1] - self.arrival[0])
            out["duration_s"] = span
            out["rate_req_s"] = (len(self) - 1) / span if span > 0 else None
        else:
            out["concurrency"] = self.concurrency
        out.update(self.source)
        return out
