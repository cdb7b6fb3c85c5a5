"""Turn kernel measurements into a calibration file: fit every family present, record the fit errors.

Used by scripts/fit_kernels.py (the bundled servesim/data/kernels.json, from the shared profiles) and by
`servesim calibrate --kernels DIR` (a user's own measurements in servesim's CSV schema, see samples.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device, get_device
import numpy as np

from servesim.perf.kernels import forms
from servesim.perf.kernels.calibration import ENGINES, FORMAT, load_calibration
from servesim.perf.kernels.fit import fit, predict
from servesim.perf.kernels.forms import Hardware
from servesim.perf.kernels.samples import Samples, read_csv_dir


def hardware(device: Device, key: str) -> Hardware:
    peak = device.peak_flops("fp8") if key == "gemm.fp8" else device.bf16_flops
    return Hardware(peak, device.mem_bandwidth, device.sms or 100, device.link_bandwidth, device.l2_bytes)


def fit_samples(samples: list[Samples], device: Device) -> tuple[dict, dict]:
    """(coefficients, fit statistics) per family key."""
    coeffs, stats = {}, {}
    for s in samples:
        c, st = fit(s, hardware(device, s.key))
        coeffs[s.key] = [float(f"{v:.6g}") for v in c]
        stats[s.key] = {k: round(v, 4) if isinstance(v, float) else v for k, v in st.items()} | {"source": s.source}
    return coeffs, stats


def _keep_shipped_rule_coefficients(coeffs: dict, samples: list[Samples], shipped) -> None:
    """A user's allreduce.csv carries neither NCCL's rows nor token counts: the coefficients only those identify
    (forms.ALLREDUCE_RULE_PARAMS) keep the shipped fit's values instead of their unfitted starting values."""
    for s in samples:
        c = s.columns
        if s.family != "allreduce" or "allreduce" not in shipped.coeffs:
            continue
        if (c["path"] == forms.AR_NCCL).any() and (c["tokens"] > 0).any():
            continue
        params = forms.ALLREDUCE.params
        for name in forms.ALLREDUCE_RULE_PARAMS:
            i = params.index(name)
            coeffs[s.key][i] = shipped.coeffs["allreduce"][i]


def calibrate_dir(directory: str | Path, gpu: str, engine: str, output: str | Path) -> dict:
    """Fit a user's measurements (servesim CSV schema) and write a calibration file for `gpu` and `engine`."""
    if engine not in ENGINES:
        raise ServesimError(f"unknown engine {engine!r}; valid choices: {', '.join(ENGINES)}")
    device = get_device(gpu)
    samples = read_csv_dir(directory)
    coeffs, stats = fit_samples(samples, device)
    shipped = load_calibration(device, engine)
    _keep_shipped_rule_coefficients(coeffs, samples, shipped)
    for s in samples:  # how far the shipped model (bundled fit, or its reference GPU's) is from these measurements
        if s.key in shipped.coeffs:
            err = np.abs(predict(s.family, shipped.coeffs[s.key], hardware(device, s.key), s) / s.latency - 1.0)
            stats[s.key]["shipped_median_abs_err"] = round(float(np.median(err)), 4)
    data = {"format": FORMAT, "measured": {device.name: {engine: {"source": str(directory), "coeffs": coeffs,
                                                                   "fit": stats}}}}
    Path(output).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return stats
