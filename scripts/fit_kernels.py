"""Fit servesim/data/kernels.json from the measured kernel profiles in ../shared/data/profiles.

    .venv/bin/python scripts/fit_kernels.py [--data ../shared/data] [-o src/servesim/data/kernels.json]

GEMM, context/generation attention and all-reduce per engine from NVIDIA aiconfigurator's tables (H100 SXM,
A100 SXM; the newest version of each engine); norms, residual adds, SiLU-and-mul and rotary embedding from
Vidur's per-operator profiles (engine-independent). Deterministic: same data, same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from servesim.hardware.catalog import get_device
from servesim.perf.kernels.calibrate import fit_samples
from servesim.perf.kernels.calibration import ENGINES, FORMAT
from servesim.perf.kernels.host import fit_host, read_decode_medians
from servesim.perf.kernels.samples import concat, read_aiconfigurator, read_vidur_mlp

ROOT = Path(__file__).resolve().parents[1]
MEASURED = {"h100": "h100_sxm", "a100": "a100_sxm"}  # servesim GPU -> aiconfigurator folder
# Host (CPU) time per engine step: scheduling, input preparation, output handling, as fixed seconds plus
# seconds per running request, and whether the engine overlaps it with the GPU (async scheduling: the step
# lasts max(GPU, host)) or not (GPU + host); `--step-overhead` adds a serial one per run.
# vLLM's is fitted (decode steps, least squares) from measurements/cpu-host/summary.csv: scripts/profile_host.py
# timing vLLM 0.32's own engine-core host code (V1 model runner) on this project's 2-core cloud Xeon VM, not a
# GPU server's host; it is used as measured, unscaled. GPU vLLM 0.32 schedules asynchronously by default
# (vllm/config/vllm.py: async_scheduling None -> True unless pooling, unsupported speculative decoding or PP
# with the V1 runner). SGLang's and TensorRT-LLM's host code cannot run here and no published per-step host
# time was found: they stay 0.
HOST_PROFILE = ROOT / "measurements" / "cpu-host" / "summary.csv"
ENGINE_HOST = {
    "vllm": {"overlapped": True,
             "note": "vLLM 0.32 engine-core host time measured on a 2-core cloud Xeon VM "
                     "(measurements/cpu-host); async scheduling overlaps it with the GPU"},
    "sglang": {"host_fixed_s": 0.0, "host_per_seq_s": 0.0, "overlapped": True,
               "note": "SGLang's overlap scheduler; not measured"},
    "trtllm": {"host_fixed_s": 0.0, "host_per_seq_s": 0.0, "overlapped": True,
               "note": "TensorRT-LLM's C++ executor; not measured"},
}


def engine_host() -> dict:
    return {**ENGINE_HOST, "vllm": {**ENGINE_HOST["vllm"], **fit_host(read_decode_medians(HOST_PROFILE))}}


def build(data: Path) -> dict:
    profiles = data / "profiles"
    measured: dict = {}
    for gpu, folder in MEASURED.items():
        device = get_device(gpu)
        entry: dict = {}
        for engine in ENGINES:
            samples = read_aiconfigurator(profiles / "aiconfigurator" / "data" / folder, engine)
            coeffs, stats = fit_samples(samples, device)
            source = "aiconfigurator-core 0.12.0: " + ", ".join(sorted({s.source for s in samples}))
            entry[engine] = {"source": source, "coeffs": coeffs, "fit": stats}
        elementwise = []
        for path in sorted((profiles / "vidur" / "compute" / gpu).glob("*/*/mlp.csv")):
            elementwise.extend(read_vidur_mlp(path)[1])
        by_op = {}
        for s in elementwise:
            by_op.setdefault(s.variant, []).append(s)
        pooled = [concat(parts, f"vidur compute/{gpu} ({len(parts)} models)") for parts in by_op.values()]
        coeffs, stats = fit_samples(pooled, device)
        entry["common"] = {"source": f"Vidur compute/{gpu}/*/mlp.csv", "coeffs": coeffs, "fit": stats}
        measured[gpu] = entry
    return {"format": FORMAT, "measured": measured, "engines": engine_host(),
            "sources": ["NVIDIA aiconfigurator-core 0.12.0 systems/data (Apache-2.0)",
                        "microsoft/vidur data/profiling compute (MIT)",
                        "servesim measurements/cpu-host: vLLM 0.32 host time per step (scripts/profile_host.py)"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "src" / "servesim" / "data" / "kernels.json")
    args = ap.parse_args()
    result = build(args.data)
    args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for gpu, engines in result["measured"].items():
        for engine, entry in engines.items():
            errs = ", ".join(f"{k} {v['median_abs_err'] * 100:.1f}%" for k, v in entry["fit"].items())
            print(f"{gpu} {engine}: median abs error in sample: {errs}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
