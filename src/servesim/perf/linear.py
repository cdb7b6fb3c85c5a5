"""A step-cost model fitted to measured step times: linear in what a step computes.

    t = overhead + per_token * tokens + per_seq * seqs + per_attn_pair * prefill attention pairs
        + per_kv_token * decode KV tokens

On a CPU (and on a GPU at small batch) a step's time is close to linear in these: GEMMs scale with tokens,
bookkeeping and sampling with sequences, prefill attention with query-key pairs, decode attention with the KV
it reads. Fitted by perf/calibrate.py from `servesim validate record` traces. One formula serves scalars and
numpy arrays with the same operations in the same order, so decode_span equals step_time bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from servesim.perf.base import StepShape

FEATURES = ("overhead", "per_token", "per_seq", "per_attn_pair", "per_kv_token")


def shape_features(s: StepShape) -> tuple[float, float, float, float, float]:
    """The regressors of one step, in FEATURES order."""
    return 1.0, float(s.num_tokens), float(s.num_seqs), float(s.prefill_attn_pairs), float(s.decode_kv_tokens)


@dataclass(frozen=True)
class LinearStepModel:
    overhead: float  # seconds per step
    per_token: float  # seconds per scheduled token
    per_seq: float  # seconds per scheduled request
    per_attn_pair: float  # seconds per query-key pair of prefill attention
    per_kv_token: float  # seconds per KV token a decode reads

    def _time(self, tokens, seqs, pairs, kv):
        return self.overhead + self.per_token * tokens + self.per_seq * seqs + self.per_attn_pair * pairs \
            + self.per_kv_token * kv

    def step_time(self, s: StepShape) -> float:
        return float(self._time(np.float64(s.num_tokens), np.float64(s.num_seqs), np.float64(s.prefill_attn_pairs),
                                np.float64(s.decode_kv_tokens)))

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        return self.decode_times(num_seqs, kv_tokens + num_seqs * np.arange(steps, dtype=np.float64))

    def decode_times(self, num_seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        b = np.float64(num_seqs)
        return np.asarray(self._time(b, b, np.float64(0.0), np.asarray(kv_tokens, dtype=np.float64)), dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def plus(self, overhead: float = 0.0, per_seq: float = 0.0) -> "LinearStepModel":
        """The same model with extra time per step and per scheduled request (a server's IPC and output work)."""
        return LinearStepModel(self.overhead + overhead, self.per_token, self.per_seq + per_seq, self.per_attn_pair,
                               self.per_kv_token)
