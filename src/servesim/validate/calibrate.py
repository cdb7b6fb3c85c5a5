"""`servesim calibrate`: measured step times -> a step-cost model -> a named device profile.

Two stages, each from measurements, nothing assumed:
1. The engine's step cost, fitted to the step durations of `validate record` traces (vLLM in-process, one
   process doing schedule + model + update): perf/calibrate.py.
2. Optionally, what the OpenAI server adds on top, fitted to a few measured load points (`servesim measure`
   runs): a time per step and per scheduled request (engine-core <-> worker IPC, output serialisation,
   streaming; negative if the server's split processes overlap work the in-process engine does serially) and a
   frontend latency per request (HTTP, input processing). Each candidate is judged by
   simulating those runs' workloads and comparing TTFT p50, TPOT p50 and output throughput with the
   measurement; a coordinate search minimises the squared log errors.
The load points used here must not be the ones a validation then predicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from servesim import __version__
from servesim.config import make_config
from servesim.errors import ServesimError
from servesim.measure.commands import WORKLOAD_FIELDS
from servesim.metrics.compare import load_requests, run_metrics
from servesim.metrics.io import requests_table
from servesim.metrics.latency import itl_lists
from servesim.models.catalog import load_model_config
from servesim.perf.calibrate import fit_step_model, trace_samples
from servesim.perf.profile import CalibratedProfile, ServingOverhead
from servesim.validate.trace import load_trace, version_warning
from servesim.workload.build import build_workload

GiB = 1024**3
TARGETS = ("ttft_p50", "tpot_p50", "output_tokens_per_s")
# Search ranges. The server may also be cheaper per step than one in-process step (scheduling and the forward
# pass run in separate processes on separate cores), so per_step may go below zero, to half the fitted overhead.
BOUNDS = {"per_step": (-0.5, 0.05), "per_seq": (0.0, 0.005), "frontend_latency": (0.0, 0.5)}
ROUNDS = 3
GOLDEN_ITERS = 14


@dataclass
class Served:
    """The served deployment the profile describes (flags of the vLLM server that was measured)."""

    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    max_model_len: int
    kv_cache_gib: float

    def scheduler(self) -> dict:
        return {"block_size": self.block_size, "max_num_batched_tokens": self.max_num_batched_tokens,
                "max_num_seqs": self.max_num_seqs, "max_model_len": self.max_model_len}


def _traces(paths: list[Path], model_config: dict, warn) -> list[dict]:
    traces = []
    for path in paths:
        trace = load_trace(path)
        if (w := version_warning(trace, path)):
            warn(w)
        recorded = trace.get("model")
        if recorded is not None and any(recorded.get(k) != model_config.get(k) for k in recorded if k != "architectures"):
            raise ServesimError(f"{path} was recorded with another model than --model-config; calibrate one model at a time")
        traces.append(trace)
    return traces


def _run_config(run_dir: Path, model_config_path: Path, served: Served):
    settings_path = run_dir / "config.yaml"
    if not settings_path.exists():
        raise ServesimError(f"{run_dir}: no config.yaml; expected a `servesim measure -o` directory")
    settings = yaml.safe_load(settings_path.read_text()) or {}
    workload = {k: settings.get(k) for k in WORKLOAD_FIELDS if settings.get(k) is not None}
    return make_config(workload, model_config=str(model_config_path), block_size=served.block_size,
                       max_num_batched_tokens=served.max_num_batched_tokens, max_num_seqs=served.max_num_seqs,
                       max_model_len=served.max_model_len)


def simulated_metrics(cfg, workload, profile: CalibratedProfile) -> dict[str, float]:
    from servesim.simulate import run_simulation  # simulate sits above validate's helpers

    result = run_simulation(cfg, workload=workload, profile=profile)
    offsets, values = itl_lists(result.steps, result.emits, len(result.requests["arrival"]))
    return run_metrics(requests_table(result.requests, offsets, values))


def _loss(real: list[dict], sim: list[dict]) -> float:
    return float(sum(math.log(s[k] / r[k]) ** 2 for r, s in zip(real, sim) for k in TARGETS))


def fit_serving(base: CalibratedProfile, runs: list[tuple], progress=lambda s: None) -> tuple[ServingOverhead, float]:
    """Coordinate search (golden section per term) over the serving overheads; runs: (cfg, workload, metrics)."""
    real = [m for _, _, m in runs]
    current = {"per_step": 0.0, "per_seq": 0.0, "frontend_latency": 0.0}

    def loss(values: dict) -> float:
        base.serving = ServingOverhead(**values)
        return _loss(real, [simulated_metrics(cfg, wl, base) for cfg, wl, _ in runs])

    best = loss(current)
    ratio = (math.sqrt(5) - 1) / 2
    bounds = dict(BOUNDS, per_step=(BOUNDS["per_step"][0] * base.step_model.overhead, BOUNDS["per_step"][1]))
    for round_ in range(ROUNDS):
        for name, (lo, hi) in bounds.items():
            a, b = lo, hi
            c, d = b - ratio * (b - a), a + ratio * (b - a)
            fc, fd = loss({**current, name: c}), loss({**current, name: d})
            for _ in range(GOLDEN_ITERS):
                if fc < fd:
                    b, d, fd = d, c, fc
                    c = b - ratio * (b - a)
                    fc = loss({**current, name: c})
                else:
                    a, c, fc = c, d, fd
                    d = a + ratio * (b - a)
                    fd = loss({**current, name: d})
            value, value_loss = (c, fc) if fc < fd else (d, fd)
            if value_loss < best:
                current[name], best = value, value_loss
        progress(f"round {round_ + 1}: per_step {current['per_step'] * 1e3:.2f} ms, per_seq "
                 f"{current['per_seq'] * 1e3:.3f} ms, frontend {current['frontend_latency'] * 1e3:.1f} ms, loss {best:.4f}")
    base.serving = ServingOverhead(**current)
    return base.serving, best


def calibrate(name: str, trace_paths: list[Path], model_config_path: Path, served: Served, run_dirs: list[Path],
              warn=print, progress=print) -> CalibratedProfile:
    model = load_model_config(model_config_path)
    model_config = json.loads(Path(model_config_path if model_config_path.suffix == ".json"
                                   else model_config_path / "config.json").read_text())
    traces = _traces(trace_paths, model_config, warn)
    x, y = trace_samples(traces)
    fit = fit_step_model(x, y)
    progress(f"step model from {fit.steps} steps ({fit.steps - fit.kept} stalls dropped): median |error| "
             f"{fit.median_abs_rel_error * 100:.1f}%, p90 {fit.p90_abs_rel_error * 100:.1f}%")
    profile = CalibratedProfile(
        name=name, model_config={k: v for k, v in model_config.items() if not k.startswith("_")},
        step_model=fit.model, serving=ServingOverhead(), kv_cache_bytes=int(served.kv_cache_gib * GiB),
        scheduler=served.scheduler(),
        provenance={"servesim_version": __version__, "traces": [str(p) for p in trace_paths],
                    "step_fit": fit.as_dict(), "vllm_version": traces[0].get("vllm_version")},
    )
    if profile.num_blocks(model, served.block_size) * served.block_size < served.max_model_len:
        raise ServesimError(f"--kv-cache-gib {served.kv_cache_gib} holds fewer tokens than max_model_len {served.max_model_len}")
    if run_dirs:
        runs = []
        for run in run_dirs:
            cfg = _run_config(run, model_config_path, served)
            real = run_metrics(load_requests(run))
            if any(not (real.get(k, 0) > 0) for k in TARGETS):
                raise ServesimError(f"{run}: the measured run lacks {', '.join(TARGETS)}; is it a complete measurement?")
            runs.append((cfg, build_workload(cfg), real))
        serving, loss = fit_serving(profile, runs, progress)
        sims = [simulated_metrics(cfg, wl, profile) for cfg, wl, _ in runs]
        profile.provenance["serving_fit"] = {
            "runs": [str(r) for r in run_dirs], "loss": loss,
            "errors": {str(r): {k: s[k] / m[k] - 1 for k in TARGETS} for r, (_, _, m), s in zip(run_dirs, runs, sims)},
        }
    return profile

