"""Per-request latencies and token times, recovered exactly from the engine's step and emission logs."""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def step_ends(steps: dict[str, np.ndarray]) -> np.ndarray:
    return steps["start"] + steps["duration"]


def request_latencies(reqs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TTFT, TPOT, E2E and queueing delay per request (NaN where undefined: rejected, or TPOT of 1 token)."""
    done = reqs["finish_reason"] != 3
    arrival = reqs["arrival"]
    nan = np.full(len(arrival), np.nan)
    ttft = np.where(done, reqs["first_token"] - arrival, nan)
    e2e = np.where(done, reqs["finished"] - arrival, nan)
    queue = np.where(done, reqs["first_scheduled"] - arrival, nan)
    decode_tokens = reqs["output_len"] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (decode_tokens > 0), (reqs["finished"] - reqs["first_token"]) / decode_tokens, nan)
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "queue": queue}


def _sorted_ranges(emits: tuple[np.ndarray, np.ndarray, np.ndarray]):
    rid, lo, hi = emits
    order = np.lexsort((lo, rid))
    return rid[order], lo[order], hi[order]


def itl_weighted(steps: dict[str, np.ndarray], emits) -> tuple[np.ndarray, np.ndarray]:
    """Every inter-token latency as (value, multiplicity) pairs, in memory linear in steps, not tokens.

    Inside a range of consecutive steps lo..hi a request's gaps are the differences of consecutive step ends;
    between two ranges of one request (it was preempted or skipped) the gap is one value.
    """
    ends = step_ends(steps)
    rid, lo, hi = _sorted_ranges(emits)
    gaps = np.diff(ends)
    cover = np.zeros(len(ends) + 1, dtype=np.int64)
    np.add.at(cover, lo, 1)
    np.add.at(cover, hi, -1)
    weights = np.cumsum(cover)[: len(gaps)]
    same = rid[1:] == rid[:-1]
    between = ends[lo[1:][same]] - ends[hi[:-1][same]]
    values = np.concatenate([gaps, between])
    counts = np.concatenate([weights, np.ones(len(between), dtype=np.int64)])
    keep = counts > 0
    return values[keep], counts[keep]


def itl_lists(steps: dict[str, np.ndarray], emits, num_requests: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ITL of every request: (offsets, values) so request r's ITLs are values[offsets[r]:offsets[r+1]]."""
    ends = step_ends(steps)
    rid, lo, hi = _sorted_ranges(emits)
    lengths = hi - lo + 1
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    token_steps = np.repeat(lo, lengths) + (np.arange(total) - starts)
    token_rid = np.repeat(rid, lengths)
    times = ends[token_steps]
    first_of_request = np.ones(total, dtype=bool)
    first_of_request[1:] = token_rid[1:] != token_rid[:-1]
    values = np.diff(times)[~first_of_request[1:]]
    itl_rid = token_rid[1:][~first_of_request[1:]]
    counts = np.bincount(itl_rid, minlength=num_requests)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return offsets, values


def percentile(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, qs) -> list[float]:
    """np.percentile's linear interpolation on the array that repeats each value `count` times."""
    total = int(counts.sum())
    if total == 0:
        return [float("nan")] * len(qs)
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(counts[order])
    out = []
    for q in qs:
        pos = q / 100.0 * (total - 1)
        below = int(np.floor(pos))
        lo = v[np.searchsorted(c, below, side="right")]
        hi = v[np.searchsorted(c, min(below + 1, total - 1), side="right")]
        out.append(float(lo + (hi - lo) * (pos - below)))
    return out


def distribution(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out = {"mean": float(values.mean())}
    out.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
    return out


def weighted_distribution(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    if not counts.sum():
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out = {"mean": float(np.dot(values, counts) / counts.sum())}
    out.update({f"p{q}": v for q, v in zip(PERCENTILES, weighted_percentiles(values, counts, PERCENTILES))})
    return out
