"""GPU-side commands and errors: one line naming the value and the choices; calibrate refits and simulate uses it."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_data
from servesim.cli import app
from servesim.hardware.catalog import get_device
from servesim.perf.kernels import forms
from servesim.perf.kernels.calibrate import hardware
from servesim.perf.kernels.calibration import load_calibration
from servesim.perf.kernels.fit import fit, predict
from servesim.perf.kernels.samples import gemm_samples, read_aiconfigurator

runner = CliRunner()
QUICK = ["simulate", "--requests", "5", "--qps", "1", "--quiet"]


@pytest.mark.parametrize("args, expected", [
    (["--gpu", "x100"], "unknown GPU 'x100'"),
    (["--model", "qwen2.5-7b", "--tp", "8"], "--tp 8 does not divide qwen2.5-7b's 28 attention heads; valid choices: 1, 2, 4"),
    (["--tp", "3"], "--tp 3 is not supported; valid choices: 1, 2, 4, 8"),
    (["--pp", "33"], "--pp 33 must be between 1 and llama-3.1-8b's 32 layers"),
    (["--gpu", "a100", "--dtype", "fp8"], "a100 has no FP8 tensor cores; use --dtype bf16 or one of: h100"),
    (["--engine", "tgi"], "unknown --engine 'tgi'; valid choices: vllm, sglang, trtllm"),
    (["--cost-model", "magic"], "unknown --cost-model 'magic'; valid choices: calibrated, roofline"),
    (["--kv-cache-dtype", "int4"], "unknown --kv-cache-dtype 'int4'; valid choices: bf16, fp16, fp8"),
    (["--interconnect", "ib"], "unknown --interconnect 'ib'; valid choices: nvlink, pcie"),
    (["--kernels", "/nonexistent.json"], "kernel calibration file '/nonexistent.json' does not exist"),
])
def test_bad_gpu_side_input_is_one_line_and_exit_2(args, expected):
    result = runner.invoke(app, QUICK + args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert expected in text
    assert "Traceback" not in result.output


def test_simulate_runs_every_engine_and_both_clocks_with_tp_and_pp():
    for args in (["--engine", "sglang"], ["--engine", "trtllm", "--dtype", "fp8", "--kv-cache-dtype", "fp8"],
                 ["--cost-model", "roofline"], ["--model", "llama-3.1-70b", "--tp", "4", "--pp", "2"],
                 ["--gpu", "mi300x"], ["--gpu", "l40s", "--tp", "2"]):
        result = runner.invoke(app, QUICK[:-1] + ["--json"] + args)
        assert result.exit_code == 0, (args, result.output)
        assert json.loads(result.output)["requests"]["completed"] == 5


def test_fit_command_prints_the_table_and_json():
    result = runner.invoke(app, ["fit", "--model", "llama-3.1-70b", "--gpu", "h100", "--max-model-len", "8192", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["fits"] for r in rows] == [False, True, True, True]
    table = runner.invoke(app, ["fit", "--model", "llama-3.1-8b", "--gpu", "a100"])
    assert table.exit_code == 0 and "fits" in table.output and "budget 71.24" in table.output


def synthetic_gemm_dir(tmp_path, coeffs, device):
    rng = np.random.default_rng(0)
    m = rng.choice([1, 8, 64, 256, 1024, 4096], 300)
    n = rng.choice([1024, 4096, 14336], 300)
    k = rng.choice([1024, 4096, 8192], 300)
    lat = forms.gemm_time(coeffs, hardware(device, "gemm.bf16"), m.astype(float), n.astype(float), k.astype(float))
    lines = ["m,n,k,dtype,latency_us"] + [f"{a},{b},{c},bf16,{t * 1e6:.4f}" for a, b, c, t in zip(m, n, k, lat)]
    (tmp_path / "gemm.csv").write_text("\n".join(lines) + "\n")


def test_calibrate_refits_user_measurements_and_simulate_uses_them(tmp_path):
    device = get_device("h100")
    slow = list(load_calibration(device, "vllm").get("gemm.bf16"))
    slow[2] *= 0.5  # a GPU whose GEMMs reach half the shipped compute efficiency
    synthetic_gemm_dir(tmp_path, slow, device)
    out = tmp_path / "mine.json"
    result = runner.invoke(app, ["calibrate", "--kernels", str(tmp_path), "--gpu", "h100", "-o", str(out)])
    assert result.exit_code == 0, result.output
    fitted = json.loads(out.read_text())["measured"]["h100"]["vllm"]
    assert fitted["fit"]["gemm.bf16"]["median_abs_err"] < 0.02
    assert fitted["fit"]["gemm.bf16"]["shipped_median_abs_err"] > 0.1  # the shipped fit is told how far off it is
    base = runner.invoke(app, QUICK[:-1] + ["--json", "--isl", "4000", "--osl", "4"])
    mine = runner.invoke(app, QUICK[:-1] + ["--json", "--isl", "4000", "--osl", "4", "--kernels", str(out)])
    ttft = [json.loads(r.output)["latency_s"]["ttft"]["mean"] for r in (base, mine)]
    assert ttft[1] > 1.3 * ttft[0]  # compute-bound prefill follows the slower GEMMs


def test_calibrate_reports_the_shipped_models_error_on_the_measurements(tmp_path):
    device = get_device("h100")
    synthetic_gemm_dir(tmp_path, load_calibration(device, "vllm").get("gemm.bf16"), device)
    out = tmp_path / "mine.json"
    result = runner.invoke(app, ["calibrate", "--kernels", str(tmp_path), "--gpu", "h100", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["measured"]["h100"]["vllm"]["fit"]["gemm.bf16"]["shipped_median_abs_err"] < 1e-3


def test_calibrate_rejects_bad_rows_with_file_and_line(tmp_path):
    (tmp_path / "gemm.csv").write_text("m,n,k,dtype,latency_us\n1,2,3,bf16,4\n1,2,x,bf16,4\n")
    result = runner.invoke(app, ["calibrate", "--kernels", str(tmp_path)])
    assert result.exit_code == 2 and "gemm.csv:3: k 'x' is not a number" in " ".join(result.output.split())
    (tmp_path / "gemm.csv").write_text("m,n,dtype,latency_us\n1,2,bf16,4\n")
    result = runner.invoke(app, ["calibrate", "--kernels", str(tmp_path)])
    assert result.exit_code == 2 and "missing column 'k'" in result.output
    result = runner.invoke(app, ["calibrate"])
    assert result.exit_code == 2 and "--kernels" in result.output


def test_fitter_recovers_a_known_surface():
    device = get_device("a100")
    hw = hardware(device, "gemm.bf16")
    truth = [4e-6, 2e-10, 0.7, 150.0, 0.3, 0.8, 3.0, 0.1, 1e-10, 0.2]
    rng = np.random.default_rng(1)
    m, n, k = (rng.choice(v, 400).astype(float) for v in ([1, 16, 128, 1024, 8192], [512, 4096, 28672], [1024, 8192]))
    s = gemm_samples(m, n, k, "bf16", forms.gemm_time(truth, hw, m, n, k))
    coeffs, stats = fit(s, hw)
    assert stats["median_abs_err"] < 0.01
    assert np.allclose(predict("gemm", coeffs, hw, s), s.latency, rtol=0.05)


def test_shipped_fit_matches_the_measurements_it_came_from():
    """In-sample check of the bundled coefficients on H100 vLLM's tables (the out-of-range errors are in
    docs/validation.md, from `make validate-gpu`)."""
    folder = shared_data("profiles", "aiconfigurator", "data", "h100_sxm")
    cal = load_calibration(get_device("h100"), "vllm")
    for s in read_aiconfigurator(folder, "vllm"):
        if s.family == "gemm" and s.variant == "fp8":
            continue
        err = np.abs(predict(s.family, cal.get(s.key), hardware(get_device("h100"), s.key), s) / s.latency - 1)
        assert np.median(err) < 0.12, (s.key, np.median(err))
