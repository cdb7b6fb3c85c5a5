"""Per-request latencies and token times, recovered exactly from the engine's step and emission logs."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from servesim.metrics.fixed_sum import fixed_dot
from servesim.metrics.steps import StepStatsPass, StepTable, num_steps, segments

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


def _gaps_between_ranges(emits) -> tuple[np.ndarray, np.ndarray]:
    """(step after, step before) each gap between two consecutive ranges of one request, in (request, step)
    order; only requests with several ranges (preempted or skipped ones) are sorted."""
    rid, lo, hi = emits
    several = np.flatnonzero(np.bincount(rid)[rid] > 1)
    order = several[np.lexsort((lo[several], rid[several]))]
    rid, lo, hi = rid[order], lo[order], hi[order]
    same = rid[1:] == rid[:-1]
    return lo[1:][same], hi[:-1][same]


def itl_weighted(steps, emits, stats: StepStatsPass | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every inter-token latency as (value, multiplicity) pairs, in memory linear in steps, not tokens.

    Inside a range of consecutive steps lo..hi a request's gaps are the differences of consecutive step ends;
    between two ranges of one request (it was preempted or skipped) the gap is one value. The multiplicities
    are int32 (at most the batch size; half the memory of float64 where a run peaks): the weighted mean and
    percentiles convert them exactly, to the bits float64 counts gave. `steps` is a dict of step columns
    or a StepTable, read one replica at a time (a request's ranges all lie in one replica's steps). `stats`, if
    given, is fed the same replicas' step columns.
    """
    _, lo, hi = emits
    after, before = _gaps_between_ranges(emits)
    between = np.empty(len(after))
    values = np.empty(num_steps(steps) + len(after))
    counts = np.empty(len(values), dtype=np.int32)
    kept = 0
    names = ("end",) + (StepStatsPass.NAMES if stats is not None else ())
    for seg in segments(steps, names, stats.kv_blocks_usable if stats is not None else None):
        if stats is not None:
            stats.add(seg)
        ends = seg.columns["end"]
        first, stop = seg.offset, seg.offset + len(ends)
        mine = (lo >= first) & (lo < stop)
        size = len(ends) + 1
        # Ranges covering each gap (at most the batch size): +1 where a range opens, -1 where it closes.
        cover = (np.bincount(lo[mine] - first, minlength=size)
                 - np.bincount(hi[mine] - first, minlength=size)).astype(np.int32)
        weights = np.cumsum(cover, out=cover)[: len(ends) - 1]
        keep = weights > 0
        k = int(np.count_nonzero(keep))
        values[kept: kept + k] = np.subtract(ends[1:], ends[:-1])[keep]  # faster than np.compress(out=)
        counts[kept: kept + k] = weights[keep]
        kept += k
        del cover, weights, keep
        mine = (after >= first) & (after < stop)
        between[mine] = ends[after[mine] - first] - ends[before[mine] - first]
        del seg, ends  # before the next replica's columns are built
    values[kept: kept + len(between)] = between
    counts[kept: kept + len(between)] = 1
    kept += len(between)
    return values[:kept], counts[:kept]


def itl_lists(steps: dict[str, np.ndarray], emits, num_requests: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ITL of every request: (offsets, values) so request r's ITLs are values[offsets[r]:offsets[r+1]]."""
    return next(itl_blocks(steps, emits, [0, num_requests]))


def itl_counts(emits, num_requests: int) -> np.ndarray:
    """How many ITLs each request has: one fewer than its tokens (none without tokens)."""
    rid, lo, hi = emits
    tokens = np.bincount(rid, weights=hi - lo + 1, minlength=num_requests).astype(np.int64)  # exact below 2^53
    return np.maximum(tokens - 1, 0)


def itl_blocks(steps, emits, bounds) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """itl_lists' (offsets, values) for requests bounds[i]..bounds[i+1]-1, block after block, with the same values
    bit for bit. A block reads only the step ends its requests emitted at (one window of steps per replica), so
    memory follows the block, not the run."""
    rid, lo, hi = _sorted_ranges(emits)
    cuts = np.searchsorted(rid, bounds).tolist()
    for r0, r1, c0, c1 in zip(bounds[:-1], bounds[1:], cuts[:-1], cuts[1:]):
        yield _itl_block(steps, rid[c0:c1] - r0, lo[c0:c1], hi[c0:c1], r1 - r0)


def _end_windows(steps, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The end times of the steps lo..hi of the given ranges, one window per replica they lie in (a range never
    crosses replicas), and where each range's first step sits in them."""
    offsets = steps.offsets if isinstance(steps, StepTable) else np.array([0, num_steps(steps)])
    part = np.searchsorted(offsets, lo, side="right") - 1
    windows, lo_at, size = [], np.empty(len(lo), dtype=np.int64), 0
    for k in np.unique(part).tolist():
        mine = part == k
        a, b = int(lo[mine].min()), int(hi[mine].max()) + 1
        if isinstance(steps, StepTable):
            windows.append(steps.window(("end",), a, b)["end"])
        else:
            windows.append(steps["start"][a:b] + steps["duration"][a:b])
        lo_at[mine] = lo[mine] - a + size
        size += b - a
    return (np.concatenate(windows) if windows else np.empty(0)), lo_at


def _itl_block(steps, rid, lo, hi, num_requests: int) -> tuple[np.ndarray, np.ndarray]:
    """itl_lists for requests 0..num_requests-1 (rid relative to the block), ranges sorted by (request, step)."""
    counts = itl_counts((rid, lo, hi), num_requests)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lengths = hi - lo + 1
    total = int(lengths.sum())
    if total == 0:
        return offsets, np.empty(0)
    ends, lo_at = _end_windows(steps, lo, hi)
    range_first = np.cumsum(lengths) - lengths  # token index of each range's first token
    position = np.ones(total, dtype=np.int64)  # each token's step in `ends`: +1 within a range, a jump between
    position[range_first[1:]] = lo_at[1:] - (lo_at[:-1] + lengths[:-1] - 1)
    position[0] = lo_at[0]
    times = ends[np.cumsum(position, out=position)]
    del position, ends
    new_request = np.flatnonzero(rid[1:] != rid[:-1]) + 1  # ranges that open a request (after the first)
    keep = np.ones(total - 1, dtype=bool)  # the gap into token t + 1, unless that token opens a request
    keep[range_first[new_request] - 1] = False
    return offsets, np.subtract(times[1:], times[:-1])[keep]


def percentile(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, qs) -> list[float]:
    """np.percentile's linear interpolation on the array that repeats each value `count` times."""
    total = int(counts.sum())
    if total == 0:
        return [float("nan")] * len(qs)
    positions = [q / 100.0 * (total - 1) for q in qs]
    ranks = sorted({r for pos in positions for r in (int(np.floor(pos)), min(int(np.floor(pos)) + 1, total - 1))})
    at = dict(zip(ranks, _values_at_ranks(values, counts, ranks)))
    out = []
    for pos in positions:
        below = int(np.floor(pos))
        lo, hi = at[below], at[min(below + 1, total - 1)]
        out.append(float(lo + (hi - lo) * (pos - below)))
    return out


SORT_AT_MOST = 1 << 18  # values sorted outright; more are first narrowed down by a histogram
BINS = 1 << 16  # histogram bins per narrowing pass
CHUNK = 1 << 18  # values binned per numpy call, to bound the temporaries


def _values_at_ranks(values: np.ndarray, counts: np.ndarray, ranks: list[int], narrow: bool = True) -> list:
    """The entries at 0-based `ranks` (ascending) of the sorted array that repeats each value count times.

    Exactly what sorting gives, without sorting millions of values: bin them by a key monotone in the value
    (so every value in a lower bin is smaller), find each rank's bin from the binned counts, and recurse into
    that bin alone.
    """
    low, high = (values.min(), values.max()) if len(values) else (0.0, 0.0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = (BINS - 1) / (high - low) if high > low else 0.0
    if not (narrow and len(values) > SORT_AT_MOST and np.isfinite(scale) and scale > 0):  # NaN or inf fail too
        order = np.argsort(values, kind="stable")
        cum = np.cumsum(counts[order])
        return [values[order[np.searchsorted(cum, r, side="right")]] for r in ranks]

    def keys(lo, hi):
        return ((values[lo:hi] - low) * scale).astype(np.int64)

    hist = np.zeros(BINS + 1)
    for lo in range(0, len(values), CHUNK):
        hist += np.bincount(keys(lo, lo + CHUNK), weights=counts[lo: lo + CHUNK], minlength=BINS + 1)[: BINS + 1]
    cum = np.cumsum(hist)
    bins = np.searchsorted(cum, ranks, side="right")
    wanted = np.unique(bins).tolist()
    parts: dict[int, tuple[list, list]] = {b: ([], []) for b in wanted}  # each bin's values and counts, chunk by chunk
    is_wanted = np.zeros(BINS + 1, dtype=bool)
    is_wanted[wanted] = True
    for lo in range(0, len(values), CHUNK):
        chunk_keys = keys(lo, lo + CHUNK)  # once per chunk for all the bins
        # One pass picks the values of every wanted bin (a lookup, not a compare per bin); each bin's then come from
        # that few, in the same order.
        picked = np.flatnonzero(is_wanted[chunk_keys])
        picked_keys, picked_values, picked_counts = chunk_keys[picked], values[lo + picked], counts[lo + picked]
        for b in wanted:
            mine = picked_keys == b
            parts[b][0].append(picked_values[mine])
            parts[b][1].append(picked_counts[mine])
    out = []
    for b in wanted:
        sub_values, sub_counts = np.concatenate(parts[b][0]), np.concatenate(parts[b][1])
        below = int(cum[b - 1]) if b else 0
        out += _values_at_ranks(sub_values, sub_counts, [r - below for r, rb in zip(ranks, bins) if rb == b],
                                narrow=len(sub_values) < len(values))  # rounding may put all in one bin: sort them
    return out


def distribution(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out = {"mean": float(values.mean())}
    # One call for every q (one partition of the values): each q's value is the one a call of its own gives.
    out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))})
    return out


def weighted_distribution(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    if not counts.sum():
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out = {"mean": fixed_dot(values, counts) / float(counts.sum())}
    out.update({f"p{q}": v for q, v in zip(PERCENTILES, weighted_percentiles(values, counts, PERCENTILES))})
    return out
