"""Engine host (CPU) time per step: the shipped vLLM numbers come from the committed measurement, and the clock
overlaps host with GPU (async scheduling) or adds them, as the calibration says."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.models.catalog import get_model
from servesim.perf.base import StepShape, decode_shape
from servesim.perf.calibrated import CalibratedModel
from servesim.perf.kernels.calibration import load_calibration
from servesim.perf.kernels.host import fit_host, read_decode_medians

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "measurements" / "cpu-host" / "summary.csv"


def test_shipped_vllm_host_time_is_the_fit_of_the_committed_profile():
    cal = load_calibration(get_device("h100"), "vllm")
    fit = fit_host(read_decode_medians(PROFILE))
    assert (cal.host_fixed, cal.host_per_seq) == (fit["host_fixed_s"], fit["host_per_seq_s"])
    assert cal.host_fixed > 0 and cal.host_per_seq > 0
    assert cal.host_overlapped  # GPU vLLM 0.32 schedules asynchronously by default


def test_fit_recovers_a_line_and_needs_two_batch_sizes(tmp_path):
    points = [(n, 0.0005 + 2e-5 * n) for n in (1, 4, 16, 64, 256)]
    assert fit_host(points) == {"host_fixed_s": 0.0005, "host_per_seq_s": 2e-05}
    one = tmp_path / "summary.csv"
    one.write_text("kind,num_seqs,host_s\ndecode,8,0.001\ndecode,8,0.0011\nprefill,1,0.002\n")
    with pytest.raises(ServesimError, match="two or more batch sizes"):
        read_decode_medians(one)
    one.write_text("kind,seqs,host_s\ndecode,8,0.001\n")
    with pytest.raises(ServesimError, match=r"summary.csv:1: missing column\(s\) num_seqs"):
        read_decode_medians(one)


def _model(**host):
    cal = replace(load_calibration(get_device("h100"), "vllm"), **host)
    return CalibratedModel(get_model("llama-3.2-1b"), get_device("h100"), calibration=cal, max_tokens=512,
                           max_num_seqs=64)


@pytest.mark.parametrize("shape", [decode_shape(8, 8 * 300), StepShape(72, 9, 9, 1, 64, 64 * 65 / 2, 64, 8, 2400)])
def test_overlapped_host_hides_under_the_gpu_or_sets_the_step(shape):
    gpu = _model(host_fixed=0.0, host_per_seq=0.0).step_time(shape)
    hidden = _model(host_fixed=gpu / 4, host_per_seq=1e-6)
    assert hidden.step_time(shape) == gpu
    slow_host = gpu * 3 + 1e-3 * shape.num_seqs
    longer = _model(host_fixed=gpu * 3, host_per_seq=1e-3)
    assert longer.step_time(shape) == pytest.approx(slow_host, rel=1e-12)
    serial = _model(host_fixed=gpu / 4, host_per_seq=1e-6, host_overlapped=False)
    assert serial.step_time(shape) == pytest.approx(gpu + gpu / 4 + 1e-6 * shape.num_seqs, rel=1e-12)


def test_decode_spans_price_host_time_as_single_steps_do():
    cost = _model(host_fixed=0.02, host_per_seq=1e-4)  # longer than a 1B decode step on an H100
    ends = cost.decode_span_until(8, 8 * 100, 5, 0.0, np.inf)
    singles = [cost.step_time(decode_shape(8, 8 * (100 + i))) for i in range(5)]
    assert np.diff([0.0, *ends]) == pytest.approx(singles, rel=1e-12)
    assert singles[0] == pytest.approx(0.02 + 8e-4, rel=1e-12)
    assert np.array_equal(cost.decode_span(8, 800, 5), np.asarray(singles))
