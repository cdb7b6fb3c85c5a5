"""Metrics computed one replica at a time, and percentiles found without sorting everything, give exactly the
numbers the plain whole-table formulas give."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import latency
from servesim.config import make_config
from servesim.metrics.latency import PERCENTILES, itl_weighted, weighted_percentiles
from servesim.simulate import run_simulation


def _reference(values, counts, qs):
    """Sort everything: the formula weighted_percentiles had before it learnt to narrow down by histogram."""
    total = int(counts.sum())
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


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.01, 0.0125, 0.02, 1e-9, 3.5]) | st.floats(0, 10),
                          st.integers(1, 5)), min_size=1, max_size=300),
       st.sampled_from([1, 2, 7, 1000]), st.sampled_from([2, 3, 16]))
def test_percentiles_by_histogram_equal_sorting(pairs, sort_at_most, bins):
    values = np.array([v for v, _ in pairs])
    counts = np.array([c for _, c in pairs], dtype=np.float64)
    qs = (0, 1, 50, 90, 95, 99, 100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(latency, "SORT_AT_MOST", sort_at_most)
        mp.setattr(latency, "BINS", bins)
        mp.setattr(latency, "CHUNK", 5)
        got = weighted_percentiles(values, counts, qs)
    assert got == _reference(values, counts, qs)
    assert got[2] == pytest.approx(float(np.percentile(np.repeat(values, counts.astype(np.int64)), 50)), rel=1e-12)


def test_itl_weighted_per_replica_equals_one_table():
    """A StepTable of two replicas gives the same (value, count) pairs, in the same order, as one dict table."""
    from servesim.config import make_config
    from servesim.simulate import run_simulation

    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=5, requests=300, qps=20.0,
                      replicas=3, router="least-outstanding")
    result = run_simulation(cfg)
    steps, emits = result.steps, result.emits
    whole = {key: steps[key] for key in steps}
    a_values, a_counts = itl_weighted(steps, emits)
    b_values, b_counts = itl_weighted(whole, emits)
    np.testing.assert_array_equal(a_values, b_values)
    np.testing.assert_array_equal(a_counts, b_counts)
    assert len(a_values) > 0 and result.summary["latency_s"]["itl"]["p99"] == weighted_percentiles(
        a_values, a_counts, PERCENTILES)[-1]
    # ends rebuilt from each span's start and durations are the start + duration the table holds
    for seg in steps.segments(("start", "duration", "end")):
        np.testing.assert_array_equal(seg.columns["end"], seg.columns["start"] + seg.columns["duration"])


@pytest.mark.parametrize("per_pass", [1, 5, 300])
def test_span_expansion_in_passes_equals_one_pass(per_pass, monkeypatch):
    """Reading a step log a few span steps at a time gives the table reading it all at once gives."""
    from servesim.config import make_config
    from servesim.engine import logs
    from servesim.simulate import run_simulation

    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=2, requests=200, qps=10.0,
                      block_size=32)
    log = run_simulation(cfg).steps.parts[0][1]
    names = logs.STEP_COLUMNS + ("end",)
    whole = log.as_numpy(names)
    assert log.num_spans > 5 and len(whole["start"]) > 1000
    monkeypatch.setattr(logs, "SPAN_STEPS_PER_PASS", per_pass)
    for name, column in log.as_numpy(names).items():
        np.testing.assert_array_equal(column, whole[name], err_msg=name)


def test_fixed_dot_is_exact_on_integers_and_close_to_the_exact_sum():
    from servesim.metrics import fixed_sum
    rng = np.random.default_rng(3)
    ints = rng.integers(0, 1000, 200_001).astype(np.float64)
    assert fixed_sum.fixed_dot(ints, ints) == float(sum(int(v) * int(v) for v in ints))
    values, weights = rng.random(200_001), rng.random(200_001)
    exact = math.fsum((values * weights).tolist())
    assert abs(fixed_sum.fixed_dot(values, weights) - exact) <= 1e-12 * exact
    with pytest.raises(ValueError, match="lengths differ"):
        fixed_sum.fixed_dot(values, weights[:-1])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 150_000), max_size=6), st.integers(0, 2**32 - 1))
def test_fixed_dot_fed_in_pieces_gives_the_bits_of_the_whole(cuts, seed):
    # step_statistics streams the replicas' columns through FixedDot instead of keeping cluster-wide arrays.
    from servesim.metrics import fixed_sum
    rng = np.random.default_rng(seed)
    # Magnitudes far apart, so a chunk's sum drops small terms: chunks cut elsewhere would give other bits.
    values, weights = rng.choice([1e16, -1e16, 1.0, 3.0], 300_000), rng.random(300_000)
    edges = [0, *sorted(cuts), len(values)]
    streamed = fixed_sum.FixedDot()
    for lo, hi in zip(edges[:-1], edges[1:]):
        streamed.add(values[lo:hi], weights[lo:hi])
    assert streamed.value() == fixed_sum.fixed_dot(values, weights)
    with pytest.raises(ValueError, match="lengths differ"):
        streamed.add(values[:3], weights[:2])


def test_fixed_dot_of_one_array_is_its_fixed_sum():
    from servesim.metrics import fixed_sum
    values = np.random.default_rng(5).choice([1e16, -1e16, 1.0, 3.0], 200_001)
    streamed = fixed_sum.FixedDot()
    streamed.add(values[:70_000])
    streamed.add(values[70_000:])
    assert streamed.value() == fixed_sum.fixed_dot(values, np.ones(len(values)))


def test_the_itl_pass_computes_the_same_step_statistics_as_their_own_pass():
    from servesim.metrics.steps import StepTable, step_statistics
    result = run_simulation(make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=2,
                                        requests=400, qps=8.0, replicas=3, router="least-outstanding"))
    alone = step_statistics(StepTable(result.steps.parts))  # a fresh table: its own pass over the replicas
    assert alone.engine == result.summary["engine"]
    assert alone.replicas == result.steps.stats.replicas


def test_step_statistics_of_a_plain_dict_finds_the_latest_end_whatever_the_row_order():
    # A dict of step columns is one segment that may interleave replicas: its last row is not its latest end.
    from servesim.engine.logs import STEP_COLUMNS
    from servesim.metrics.steps import step_statistics

    cols = {name: np.ones(3, dtype=np.int64) for name in STEP_COLUMNS}
    cols |= {"start": np.array([0.0, 5.0, 1.0]), "duration": np.array([1.0, 1.0, 1.0]), "replica": np.array([0, 1, 0])}
    assert step_statistics(cols, 10).engine["last_step_end_s"] == 6.0


def test_span_ends_are_the_clocks_sequential_sums():
    # Position by position while many spans are that long, then one accumulate per span: both must be the plain
    # running sum start + d0 + d1 + ... of each span, bit for bit.
    from servesim.engine.logs import FEW_SPANS_LEFT, StepLog
    rng = np.random.default_rng(11)
    for n in (1, FEW_SPANS_LEFT, 5 * FEW_SPANS_LEFT):
        lengths = rng.integers(1, 257, n).astype(np.int64)
        offsets = np.cumsum(lengths) - lengths
        durations = rng.random(int(lengths.sum())) * rng.choice([1e-3, 1.0, 1e3], int(lengths.sum()))
        start = rng.random(n) * 1e4
        ends = StepLog._span_ends(start, durations, lengths, offsets)
        for s in range(n):
            t = float(start[s])
            for j in range(int(lengths[s])):
                t += float(durations[offsets[s] + j])
                assert ends[offsets[s] + j] == t


@pytest.mark.parametrize("overrides", [
    {},  # the calibrated clock's plain-float decode form
    {"pp": 2, "model": "llama-3.1-70b", "tp": 4},  # a form it has not: the cost model's numpy span
    {"cost_model": "roofline"},
    {"num_gpu_blocks": 600, "max_model_len": 8192, "qps": 30.0},  # preemptions and block-bounded spans
])
def test_reading_a_log_in_order_equals_the_numpy_expansion(overrides):
    """The compiled core's sequential read of a step log (span_steps) gives the numpy expansion's columns bit for
    bit, for every column and for subsets of them."""
    pytest.importorskip("librt.vecs", reason="span_steps needs librt (the compile extra)")
    from servesim.engine import logs

    values = {"model": "llama-3.1-8b", "gpu": "h100", "workload": "chat", "seed": 4, "requests": 300, "qps": 8.0,
              **overrides}
    log = run_simulation(make_config(None, **values)).steps.parts[0][1]
    assert log.num_spans > 5 and log.num_rows > 5
    for names in (logs.STEP_COLUMNS + ("end",), ("end",), ("duration", "kv_blocks_used"), ("start", "running")):
        ordered = log._expand_in_order(names)
        reference = {name: np.empty(len(log), dtype=column.dtype) for name, column in ordered.items()}
        log.as_numpy(names, 0, len(log), out=reference)  # given `out`, as_numpy always takes the numpy expansion
        assert list(ordered) == list(names)
        for name in names:
            assert ordered[name].tobytes() == reference[name].tobytes(), name
