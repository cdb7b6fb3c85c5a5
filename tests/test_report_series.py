"""The report's reductions against brute force: what a chart shows is what the data says."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from servesim.report import series

finite = st.floats(0.0, 1000.0, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.integers(1, 1500), elements=finite))
@settings(max_examples=60, deadline=None)
def test_cdf_points_are_exact_fractions(values):
    x, p = series.cdf(values, max_points=200)
    assert len(x) <= 200
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(p) >= 0)
    assert p[-1] == 1.0 and x[-1] == values.max()
    # each point's fraction is at least the share of values strictly below it and at most the share at or below
    below = (values[None, :] < x[:, None]).mean(axis=1)
    at_or_below = (values[None, :] <= x[:, None]).mean(axis=1)
    assert np.all(below <= p + 1e-12) and np.all(p <= at_or_below + 1e-12)


def test_cdf_ignores_nan_and_keeps_the_tail():
    values = np.concatenate([np.arange(100_000, dtype=float), [np.nan] * 50])
    x, p = series.cdf(values)
    assert not np.isnan(x).any()
    # the tail keeps a resolution finer than 0.05 percentile points at p99 and 0.005 at p99.9
    assert np.isclose(x[np.searchsorted(p, 0.99)], 98_999, atol=50)
    assert np.isclose(x[np.searchsorted(p, 0.999)], 99_899, atol=5)


@given(st.floats(0, 1e4), st.floats(1e-3, 1e5), st.integers(5, 400))
@settings(max_examples=100, deadline=None)
def test_windows_cover_the_span_with_nice_widths(t0, span, count):
    edges, width = series.windows(t0, t0 + span, count)
    assert edges[0] <= t0 and edges[-1] == t0 + span
    assert len(edges) - 1 <= count + 1
    assert np.all(np.diff(edges) > 0) and np.diff(edges).max() <= 1.5 * width + 1e-9
    mantissa = width / 10 ** np.floor(np.log10(width))
    assert np.isclose(mantissa, [1, 2, 5, 10], rtol=1e-9).any()


@given(arrays(np.float64, st.integers(1, 400), elements=finite), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_window_percentiles_match_numpy(times, seed):
    values = np.random.default_rng(seed).exponential(1.0, len(times))
    values[:: 7] = np.nan
    edges, _ = series.windows(0.0, max(times.max(), 1.0), 20)
    p50, p99 = series.window_percentiles(times, values, edges)
    idx = series.window_index(times, edges)
    for w in range(len(edges) - 1):
        mine = values[(idx == w) & ~np.isnan(values)]
        if len(mine):
            assert np.isclose(p50[w], np.percentile(mine, 50)) and np.isclose(p99[w], np.percentile(mine, 99))
        else:
            assert np.isnan(p50[w]) and np.isnan(p99[w])


def test_rate_counts_every_event_once():
    times = np.random.default_rng(1).uniform(0, 100, 5000)
    edges, _ = series.windows(0.0, 100.0, 37)
    per_s = series.rate(times, edges)
    assert np.isclose((per_s * np.diff(edges)).sum(), 5000)


def test_step_state_is_duration_weighted():
    start = np.array([0.0, 1.0, 1.5, 5.2])
    duration = np.array([1.0, 0.5, 1.5, 0.1])
    value = np.array([10.0, 4.0, 8.0, 3.0])
    edges = np.array([0.0, 2.0, 4.0, 6.0])
    mean, peak = series.step_state(start, duration, value, edges)
    assert np.isclose(mean[0], (10 * 1.0 + 4 * 0.5 + 8 * 1.5) / 3.0) and peak[0] == 10
    assert np.isnan(mean[1]) and np.isnan(peak[1])  # idle window: a gap, not a zero
    assert np.isclose(mean[2], 3.0) and peak[2] == 3.0


@given(st.lists(st.tuples(st.floats(0, 100), st.lists(st.floats(0.001, 1.0), max_size=6)), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_token_times_rebuild_every_token(requests):
    first = np.array([f for f, _ in requests])
    offsets = np.concatenate([[0], np.cumsum([len(itl) for _, itl in requests])]).astype(np.int64)
    values = np.array([v for _, itl in requests for v in itl], dtype=float)
    expected = sorted(t for f, itl in requests for t in np.concatenate([[f], f + np.cumsum(itl)]))
    assert np.allclose(sorted(series.token_times(first, offsets, values)), expected)


def test_step_buckets_bound_the_points():
    for n in (1, 1499, 1500, 1501, 102_460):
        starts = series.step_buckets(n)
        assert len(starts) <= series.STEP_POINTS and starts[0] == 0
        means = series.bucket_mean(np.arange(n, dtype=float), starts)
        assert np.isclose(np.dot(means, np.diff(np.append(starts, n))), np.arange(n).sum())
