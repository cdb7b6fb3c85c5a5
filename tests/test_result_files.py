"""requests.parquet and steps.parquet written a row group at a time hold exactly the tables the whole-table
writer built, and a run that fits one group keeps its bytes."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.config import make_config
from servesim.engine.logs import STEP_COLUMNS
from servesim.metrics import row_groups
from servesim.metrics.io import requests_table, steps_table, write_result
from servesim.metrics.latency import _sorted_ranges, itl_blocks, itl_counts, itl_lists, step_ends
from servesim.metrics.row_groups import request_bounds
from servesim.metrics.steps import COLUMNS
from servesim.simulate import run_simulation

CONFIGS = {
    "3 replicas, preemptions": dict(requests=300, qps=30.0, replicas=3, router="least-outstanding", seed=3,
                                    num_gpu_blocks=200, max_model_len=2048, block_size=32),
    "1P2D": dict(requests=200, qps=10.0, prefill_pool="h100:1x1", decode_pool="h100:1x2", seed=4),
    "5 replicas, 3 requests": dict(requests=3, qps=1.0, replicas=5, seed=5),  # replicas with no steps
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def result(request):
    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", **CONFIGS[request.param])
    return run_simulation(cfg)


def _reference_itl_lists(steps: dict[str, np.ndarray], emits, num_requests: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ITL of every request, token by token from whole columns: the independent oracle."""
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


def _whole_tables(result):
    """What write_result wrote before it streamed: one table each, built from whole columns."""
    n = len(result.requests["arrival"])
    requests = requests_table(result.requests, *_reference_itl_lists(result.steps, result.emits, n))
    steps = steps_table({key: result.steps[key] for key in result.steps}, result.engine_config.num_gpu_blocks - 1)
    return requests, steps


def _assert_same_table(got, want):
    """Same schema and values, NaN equal to NaN (Table.equals calls NaN unequal once the chunks differ)."""
    assert got.schema.equals(want.schema, check_metadata=True) and got.num_rows == want.num_rows
    for name in want.column_names:
        a, b = got[name].combine_chunks(), want[name].combine_chunks()
        if name == "itl_s":
            np.testing.assert_array_equal(a.offsets.to_numpy() - a.offsets[0].as_py(),
                                          b.offsets.to_numpy() - b.offsets[0].as_py())
            a, b = a.flatten(), b.flatten()
        np.testing.assert_array_equal(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False),
                                      err_msg=name)


def test_one_group_keeps_the_bytes_of_the_whole_table_writer(result, tmp_path):
    requests, steps = _whole_tables(result)
    pq.write_table(requests, tmp_path / "requests_whole.parquet")
    pq.write_table(steps, tmp_path / "steps_whole.parquet")
    write_result(result, tmp_path / "run")
    for name in ("requests", "steps"):
        assert (tmp_path / "run" / f"{name}.parquet").read_bytes() == (tmp_path / f"{name}_whole.parquet").read_bytes()


@pytest.mark.parametrize("rows, itls", [(7, 50), (64, 1 << 30), (1 << 20, 1)])
def test_many_groups_hold_the_same_tables(result, tmp_path, monkeypatch, rows, itls):
    monkeypatch.setattr(row_groups, "ROWS_PER_GROUP", rows)
    monkeypatch.setattr(row_groups, "ITLS_PER_GROUP", itls)
    first, again = write_result(result, tmp_path / "a"), write_result(result, tmp_path / "b")
    requests, steps = _whole_tables(result)
    for name, whole in (("requests", requests), ("steps", steps)):
        pq.write_table(whole, tmp_path / "whole.parquet")
        streamed = pq.ParquetFile(first / f"{name}.parquet")
        n = whole.num_rows
        bounds = request_bounds(np.diff(whole["itl_s"].combine_chunks().offsets.to_numpy())) if name == "requests" \
            else row_groups.row_bounds(n)
        assert streamed.metadata.num_row_groups == len(bounds) - 1
        assert len(bounds) > 2 or n < 100 or (name == "steps" and rows == 1 << 20)  # several groups, unless tiny
        _assert_same_table(streamed.read(), pq.read_table(tmp_path / "whole.parquet"))
        assert (first / f"{name}.parquet").read_bytes() == (again / f"{name}.parquet").read_bytes()  # deterministic


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_windows_of_the_step_table_equal_its_slices(result, data):
    """Any window, cutting spans and crossing replicas, is the slice of the whole table (every column, bit for bit)."""
    steps = result.steps
    n = steps.num_steps
    start = data.draw(st.integers(0, n))
    stop = data.draw(st.integers(start, min(n, start + data.draw(st.sampled_from([0, 1, 3, 300, n])))))
    window = steps.window(COLUMNS + ("end",), start, stop)
    for name in COLUMNS:
        np.testing.assert_array_equal(window[name], steps[name][start:stop], err_msg=name)
    np.testing.assert_array_equal(window["end"], (steps["start"] + steps["duration"])[start:stop])


def test_a_log_read_in_windows_equals_it_read_whole(result):
    assert max(log.num_spans for _, log, _ in result.steps.parts) > 0  # the cuts fall in decode spans
    for _, log, _ in result.steps.parts:
        whole = log.as_numpy(STEP_COLUMNS + ("end",))
        cuts = sorted({0, len(log), *np.random.default_rng(len(log)).integers(0, len(log) + 1, 12).tolist()})
        for a, b in zip(cuts[:-1], cuts[1:]):
            for name, column in log.as_numpy(STEP_COLUMNS + ("end",), a, b).items():
                np.testing.assert_array_equal(column, whole[name][a:b], err_msg=f"{name} {a}:{b}")


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_itl_blocks_equal_slices_of_itl_lists(result, data):
    n = len(result.requests["arrival"])
    offsets, values = _reference_itl_lists(result.steps, result.emits, n)
    for got, want in zip(itl_lists(result.steps, result.emits, n), (offsets, values)):
        np.testing.assert_array_equal(got, want)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=6))) | {0, n})
    for r0, r1, (got_offsets, got_values) in zip(cuts[:-1], cuts[1:], itl_blocks(result.steps, result.emits, cuts)):
        np.testing.assert_array_equal(got_offsets, offsets[r0: r1 + 1] - offsets[r0])
        np.testing.assert_array_equal(got_values, values[offsets[r0]: offsets[r1]])
    np.testing.assert_array_equal(itl_counts(result.emits, n), np.diff(offsets))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=60), st.integers(1, 100), st.integers(1, 8))
def test_request_groups_are_greedy_and_bounded(counts, max_itls, max_rows):
    counts = np.array(counts, dtype=np.int64)
    bounds = request_bounds(counts, max_itls, max_rows)
    assert bounds[0] == 0 and bounds[-1] == len(counts) and bounds == sorted(bounds)
    if not len(counts):
        assert bounds == [0, 0]
        return
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        assert 1 <= r1 - r0 <= max_rows
        assert counts[r0:r1].sum() <= max_itls or r1 - r0 == 1  # one request alone may exceed the budget
        if r1 < len(counts) and r1 - r0 < max_rows:
            assert counts[r0: r1 + 1].sum() > max_itls  # the next request did not fit


def test_runs_with_the_same_clock_inputs_share_one_clock_and_write_the_same_bytes(tmp_path):
    from servesim import simulate

    cfg = make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=3, requests=300)
    simulate._calibrated_clock.cache_clear()
    first = run_simulation(cfg)  # builds the clock
    second = run_simulation(cfg)  # reuses it, its caches warm
    assert simulate._calibrated_clock.cache_info().currsize == 1
    run_simulation(make_config(None, model="llama-3.1-8b", gpu="h100", workload="chat", seed=3, requests=300,
                               max_num_seqs=64))
    # another max_num_seqs prices other table sizes: a clock of its own
    assert simulate._calibrated_clock.cache_info().currsize == 2
    write_result(first, tmp_path / "a")
    write_result(second, tmp_path / "b")
    for f in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
