"""Fitted kernel coefficients per (measured GPU, engine), as shipped in servesim/data/kernels.json.

A GPU without measurements borrows the efficiency coefficients of the measured GPU of the nearest generation
(REFERENCE) and applies them to its own spec sheet: its FLOP/s, bandwidth, SM count and links. A device YAML
borrows H100's (A100's without FP8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from servesim.errors import ServesimError, choices_error
from servesim.hardware.catalog import Device
from servesim.perf.kernels import forms

ENGINES = ("vllm", "sglang", "trtllm")
# Unmeasured GPU -> measured GPU whose efficiencies it borrows (same or nearest architecture generation).
REFERENCE = {"h200": "h100", "b200": "h100", "mi300x": "h100", "l40s": "a100"}
# 2: decode, prefill and elementwise forms gained coefficients; 3: GEMM gained small_tile_cost; 4: decode gained
# alias_hit; 5: decode gained merge_cost (XQA's multi-block rule), all-reduce the one-shot block term and NCCL's
# protocols; 6: decode gained rope_pass (older files need a refit)
FORMAT = 6


@dataclass(frozen=True)
class KernelCalibration:
    device: str  # the GPU simulated
    measured_on: str  # the GPU whose measurements the coefficients were fitted to
    engine: str
    coeffs: dict  # family key ("gemm.bf16", "context_attention", "elementwise.norm", ...) -> coefficients
    host_fixed: float  # engine host (CPU) time per step, seconds
    host_per_seq: float  # ... plus this per running request
    host_overlapped: bool  # True: the host works ahead (async scheduling), a step lasts max(GPU, host)
    source: str

    def get(self, key: str) -> list[float]:
        if key in self.coeffs:
            return self.coeffs[key]
        if key == "gemm.fp8" and "gemm.bf16" in self.coeffs:
            raise ServesimError(f"no FP8 GEMM calibration for {self.engine} on {self.measured_on}; use --dtype bf16")
        raise ServesimError(f"kernel calibration for {self.engine} on {self.measured_on} lacks {key!r}")


def bundled_path() -> Path:
    return Path(str(resources.files("servesim") / "data" / "kernels.json"))


@cache
def _read(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ServesimError(f"kernel calibration file {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ServesimError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "measured" not in data:
        raise ServesimError(f"{path}: not a servesim kernel calibration (format {FORMAT}); make one with "
                            "`servesim calibrate --kernels DIR`")
    for gpu, engines in data["measured"].items():
        for engine, entry in engines.items():
            for key, coeffs in entry.get("coeffs", {}).items():
                family = forms.FAMILIES.get(key.split(".")[0])
                if family is None or len(coeffs) != len(family.params):
                    raise ServesimError(f"{path}: {gpu}/{engine}/{key} is not a known kernel family with "
                                        f"{len(family.params) if family else '?'} coefficients")
    return data


def measured_reference(device: Device, measured: dict) -> str:
    name = device.name.lower()
    if name in measured:
        return name
    if name in REFERENCE:
        return REFERENCE[name]
    return "h100" if device.has_fp8 else "a100"


def load_calibration(device: Device, engine: str = "vllm", user_file: str | None = None) -> KernelCalibration:
    """Coefficients for `engine` on `device`: a user's calibration file first (any family it has), then the
    bundled fit of the device or its reference GPU."""
    if engine not in ENGINES:
        raise choices_error("engine", engine, ENGINES)
    bundled = _read(str(bundled_path()))
    layers = [(user_file, _read(str(user_file)))] if user_file else []
    layers.append((None, bundled))
    coeffs: dict = {}
    sources, measured_on = [], None
    for path, data in reversed(layers):  # bundled first, the user's file overrides
        ref = measured_reference(device, data["measured"])
        entry = data["measured"].get(ref, {})
        common = entry.get("common", {})
        chosen = entry.get(engine, {})
        if chosen or common:
            layer = {**common.get("coeffs", {}), **chosen.get("coeffs", {})}
            for key in layer:  # a family measured as one surface replaces the per-kernel variants beneath it
                if "." not in key:
                    coeffs = {k: v for k, v in coeffs.items() if not k.startswith(key + ".")}
            coeffs.update(layer)
            measured_on = ref
            sources.append(chosen.get("source") or common.get("source") or str(path))
    if measured_on is None:
        raise ServesimError(f"no kernel calibration for {engine} on {device.name}")
    host = bundled["engines"][engine]
    return KernelCalibration(device.name, measured_on, engine, coeffs, host["host_fixed_s"], host["host_per_seq_s"],
                             bool(host["overlapped"]), "; ".join(sources))
