"""Step-cost models: the span path must cost exactly what single steps cost; roofline sanity."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.errors import ServesimError
from servesim.hardware import get_device
from servesim.models import get_model
from servesim.perf import RooflineModel
from servesim.perf.base import StepShape, StepTotals, decode_span_until
from servesim.perf.base import decode_shape


@pytest.fixture(scope="module")
def roofline():
    return RooflineModel(get_model("llama-3.1-8b"), get_device("h100"), step_overhead=0.001)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 512), st.integers(1, 2_000_000), st.integers(1, 300))
def test_decode_span_equals_single_steps_bit_for_bit(b, kv, k):
    model = RooflineModel(get_model("llama-3.1-8b"), get_device("h100"), tp=2, step_overhead=0.001)
    singles = [model.step_time(decode_shape(b, kv + j * b)) for j in range(k)]
    assert model.decode_span(b, kv, k).tolist() == singles
    ends = decode_span_until(model, b, kv, k, 3.0, float("inf"))
    clock, clocks = 3.0, []
    for d in singles:
        clock += d
        clocks.append(clock)
    assert ends == clocks


def test_decode_span_until_stops_after_the_step_crossing_the_horizon(roofline):
    d0 = roofline.step_time(decode_shape(4, 4000))
    ends = decode_span_until(roofline, 4, 4000, 100, 0.0, 2.5 * d0)
    assert len(ends) == 3 and ends[1] < 2.5 * d0 <= ends[2]


def test_decode_is_memory_bound_and_prefill_compute_bound(roofline):
    """8B on H100: a decode step reads the 15 GB of layer and LM-head weights (4.5 ms at 3.35 TB/s; the
    embedding table is only gathered); an 8k-token prefill is ~2 * 8e9 * 8192 FLOPs (~130 ms at 989 TFLOP/s)."""
    decode = roofline.step_time(decode_shape(1, 100)) - 0.001
    assert 0.0044 < decode < 0.0046
    prefill = roofline.step_time(StepShape(8192, 1, 1, 1, 8192, 8192 * 8193 / 2, 8192, 0, 0)) - 0.001
    assert 0.12 < prefill < 0.20


def test_tp_shards_the_weights(roofline):
    tp4 = RooflineModel(get_model("llama-3.1-8b"), get_device("h100"), tp=4, step_overhead=0.001)
    one = roofline.step_time(decode_shape(1, 100)) - 0.001
    four = tp4.step_time(decode_shape(1, 100)) - 0.001
    assert one / 4 < four < one / 2  # a quarter of the weights, plus 64 all-reduces


def test_fp8_on_a100_is_refused():
    with pytest.raises(ServesimError, match="no FP8"):
        RooflineModel(get_model("llama-3.1-8b").with_dtype("fp8"), get_device("a100"))


def test_tp_must_divide_heads():
    with pytest.raises(ServesimError, match="does not divide"):
        RooflineModel(get_model("llama-3.1-8b"), get_device("h100"), tp=3)


def test_span_arrays_are_numpy(roofline):
    assert isinstance(roofline.decode_span(3, 10, 5), np.ndarray)


def test_a_fractional_count_in_a_step_shape_is_refused_not_truncated():
    # The calibrated clock reads a StepShape as whole counts (numpy ints are fine); 300.5 tokens is a caller's bug.
    assert StepTotals.of(StepShape(np.int64(3), 3, 3, 0, 0, 0.0, 0, 3, np.int64(300))).decode_kv_tokens == 300
    with pytest.raises(ValueError, match="decode_kv_tokens must be a whole number"):
        StepTotals.of(StepShape(3, 3, 3, 0, 0, 0.0, 0, 3, 300.5))
