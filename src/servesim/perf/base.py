"""The interface between the engine and any clock: what one step computes, and what it costs."""

from __future__ import annotations

from typing import Iterable, NamedTuple, Protocol

import numpy as np

from servesim.columns import int_column
from servesim.vec_types import i64, vec


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


def _whole(s: StepShape, name: str) -> int:
    """A count of the shape as an int (numpy ints welcome); a fractional count is a caller's bug, not truncated."""
    value = getattr(s, name)
    count = int(value)
    if count != value:
        raise ValueError(f"StepShape.{name} must be a whole number, got {value!r}")
    return count


class StepTotals:
    """A StepShape summed as the step's requests are scheduled, as a native object: compiled, adding a request and
    reading the sums cost no allocation (building a StepShape runs Python code: it is a NamedTuple)."""

    def __init__(self) -> None:
        self.num_tokens = self.num_seqs = self.num_sampled = self.prefill_seqs = self.prefill_tokens = 0
        self.prefill_kv_tokens = self.decode_seqs = self.decode_kv_tokens = 0
        self.prefill_attn_pairs = 0.0  # whole numbers, exact in a float below 2^53 (a step has ~1e9 at most)

    @staticmethod
    def of(s: StepShape) -> StepTotals:
        t = StepTotals()
        t.num_tokens, t.num_seqs, t.num_sampled = _whole(s, "num_tokens"), _whole(s, "num_seqs"), _whole(s, "num_sampled")
        t.prefill_seqs, t.prefill_tokens = _whole(s, "prefill_seqs"), _whole(s, "prefill_tokens")
        t.prefill_kv_tokens = _whole(s, "prefill_kv_tokens")
        t.decode_seqs, t.decode_kv_tokens = _whole(s, "decode_seqs"), _whole(s, "decode_kv_tokens")
        t.prefill_attn_pairs = float(s.prefill_attn_pairs)
        return t

    @staticmethod
    def of_schedule(rids: vec[i64], tokens: vec[i64], count: int, computed: vec[i64]) -> StepTotals:
        """The sums of a step's `count` scheduled requests: request rids[i] gets tokens[i] new tokens on top of
        its computed[rids[i]] ones (a decode if that is 1 token over a non-empty context). One pass in locals
        (compiled, native ints), the attributes written once."""
        # i64 locals: compiled, plain machine adds (an int local is a tagged value, checked at every add)
        num_tokens: i64 = 0
        prefill_seqs: i64 = 0
        prefill_tokens: i64 = 0
        prefill_kv_tokens: i64 = 0
        decode_seqs: i64 = 0
        decode_kv_tokens: i64 = 0
        pairs = 0.0
        for i in range(count):
            n = tokens[i]
            c = computed[rids[i]]
            num_tokens += n
            if n == 1 and c > 0:
                decode_seqs += 1
                decode_kv_tokens += c + 1
            else:
                prefill_seqs += 1
                prefill_tokens += n
                pairs += float(n * c + n * (n + 1) // 2)  # as float += int converts it
                prefill_kv_tokens += c + n
        t = StepTotals()
        t.num_tokens, t.num_seqs, t.num_sampled = num_tokens, count, count  # one LM-head row per scheduled request
        t.prefill_seqs, t.prefill_tokens, t.prefill_kv_tokens = prefill_seqs, prefill_tokens, prefill_kv_tokens
        t.prefill_attn_pairs = pairs
        t.decode_seqs, t.decode_kv_tokens = decode_seqs, decode_kv_tokens
        return t

    def shape(self) -> StepShape:
        return StepShape(self.num_tokens, self.num_seqs, self.num_sampled, self.prefill_seqs, self.prefill_tokens,
                         self.prefill_attn_pairs, self.prefill_kv_tokens, self.decode_seqs, self.decode_kv_tokens)


def step_shape(work: Iterable[tuple[int, int]]) -> StepShape:
    """The StepShape of a step from each scheduled request's (new tokens n, tokens already computed c)."""
    pairs = list(work)
    tokens, computed = int_column([n for n, _ in pairs]), int_column([c for _, c in pairs])
    return StepTotals.of_schedule(int_column(list(range(len(pairs)))), tokens, len(pairs), computed).shape()


def decode_shape(num_seqs: int, kv_tokens: int) -> StepShape:
    return StepShape(num_seqs, num_seqs, num_seqs, 0, 0, 0.0, 0, num_seqs, kv_tokens)
