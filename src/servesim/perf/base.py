"""The interface between the engine and any clock: what one step computes, and what it costs."""

from __future__ import annotations

from typing import Iterable, NamedTuple, Protocol

import numpy as np


class StepShape(NamedTuple):
    """The work of one engine step, aggregated over the requests it runs.

    A request with `n` new tokens on top of `c` already-computed ones is a decode if n == 1 and c > 0,
    otherwise a prefill chunk. All attention terms are linear in the requests, so a step is summarised by sums.
    """

    num_tokens: int  # new tokens over all requests (rows through every GEMM)
    num_seqs: int
    num_sampled: int  # requests that sample a token this step (rows through the LM head)
    prefill_seqs: int
    prefill_tokens: int
    prefill_attn_pairs: float  # sum of n*c + n*(n+1)/2: query-key pairs of causal attention over the context
    prefill_kv_tokens: int  # sum of c + n: KV read by prefill chunks
    decode_seqs: int
    decode_kv_tokens: int  # sum of c + 1: KV read by decodes


class StepCostModel(Protocol):
    def step_time(self, shape: StepShape) -> float:
        """Seconds for one step."""

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        """Durations of `steps` pure-decode steps of `num_seqs` requests whose KV sum starts at `kv_tokens`
        and grows by `num_seqs` a step. Must equal step_time() of each step bit for bit."""

    # Optional: decode_times(num_seqs, kv_tokens: ndarray) -> ndarray, the duration of a pure-decode step for
    # each KV sum, bit for bit step_time's; lets logs rebuild many spans' step times in one call.


def decode_span_until(cost, num_seqs: int, kv_tokens: int, max_steps: int, now: float, horizon: float) -> list[float]:
    """End times of the decode steps from `now`, up to `max_steps`, stopping after the first step that ends at
    or after `horizon`. Ends are sequential sums of the step times, the same additions a step-by-step clock
    makes. A cost model may provide a faster `decode_span_until` with the same result."""
    fast = getattr(cost, "decode_span_until", None)
    if fast is not None:
        return fast(num_seqs, kv_tokens, max_steps, now, horizon)
    durations = cost.decode_span(num_seqs, kv_tokens, max_steps)
    durations[0] += now
    ends = np.cumsum(durations)
    k = min(max_steps, 1 + int(np.searchsorted(ends[: max_steps - 1], horizon, side="left")))
    return ends[:k].tolist()


def step_shape(work: Iterable[tuple[int, int]]) -> StepShape:
    """The StepShape of a step from each scheduled request's (new tokens n, tokens already computed c)."""
    tokens = seqs = prefill_seqs = prefill_tokens = prefill_kv = decode_seqs = decode_kv = 0
    pairs = 0
    for n, c in work:
        seqs += 1
        tokens += n
        if n == 1 and c > 0:
            decode_seqs += 1
            decode_kv += c + 1
        else:
            prefill_seqs += 1
            prefill_tokens += n
            pairs += n * c + n * (n + 1) // 2
            prefill_kv += c + n
    return StepShape(tokens, seqs, seqs, prefill_seqs, prefill_tokens, float(pairs), prefill_kv, decode_seqs, decode_kv)


def decode_shape(num_seqs: int, kv_tokens: int) -> StepShape:
    return StepShape(num_seqs, num_seqs, num_seqs, 0, 0, 0.0, 0, num_seqs, kv_tokens)
