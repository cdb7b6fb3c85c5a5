"""Calibrated device profiles: a fitted step-cost model for one model on one machine, saved as YAML by
`servesim calibrate` and used by `servesim simulate --gpu NAME` (a name in the profile directory) or
`--gpu path/to/profile.yaml`.

A fitted step cost holds for the model it was measured with, so a profile names that model and refuses others.
Besides the engine's step cost it carries what the serving path adds (per step and per request IPC and output
work of the OpenAI server, and the frontend latency a request spends outside the engine), the KV cache memory
and the server's scheduler limits, so a run needs no more flags than a GPU run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import ModelSpec, model_from_hf_config
from servesim.perf.linear import FEATURES, LinearStepModel

KIND = "servesim-calibrated-profile/1"
SHAPE_FIELDS = ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size", "vocab_size")


def profile_dir() -> Path:
    return Path(os.environ.get("SERVESIM_PROFILES", Path.home() / ".servesim" / "profiles"))


@dataclass
class ServingOverhead:
    """What the OpenAI server adds to the in-process engine: per step, per scheduled request, per request."""

    per_step: float = 0.0  # seconds added to every step (engine-core <-> worker IPC, output dispatch; may be < 0)
    per_seq: float = 0.0  # seconds added per scheduled request per step (output serialisation and streaming)
    frontend_latency: float = 0.0  # seconds a request spends outside the engine (HTTP, input processing, SSE)


@dataclass
class CalibratedProfile:
    name: str
    model_config: dict  # the Hugging Face config of the model it was calibrated on
    step_model: LinearStepModel
    serving: ServingOverhead
    kv_cache_bytes: int
    scheduler: dict  # the served max_num_batched_tokens / max_num_seqs, used when a run does not set them
    provenance: dict = field(default_factory=dict)  # fits, traces, runs, command, servesim version

    @property
    def model(self) -> ModelSpec:
        return model_from_hf_config(self.model_config, name=f"model of profile {self.name}")

    @property
    def device(self) -> Device:
        """A Device for memory planning: only the KV cache size is real; there is no roofline for a fitted profile."""
        return Device(self.name, bf16_flops=0.0, fp8_flops=0.0, mem_bandwidth=0.0, mem_bytes=float(self.kv_cache_bytes),
                      link_bandwidth=0.0, link_kind="none", vendor="cpu")

    def cost_model(self) -> LinearStepModel:
        return self.step_model.plus(self.serving.per_step, self.serving.per_seq)

    def check_model(self, model: ModelSpec) -> None:
        mine = self.model
        diff = [f"{f} {getattr(model, f)} != {getattr(mine, f)}" for f in SHAPE_FIELDS if getattr(model, f) != getattr(mine, f)]
        if diff:
            raise ServesimError(f"profile {self.name!r} was calibrated for another model ({'; '.join(diff)}): a fitted step "
                                f"cost holds only for its model; pass that model with --model-config, or calibrate again")

    def num_blocks(self, model: ModelSpec, block_size: int, kv_dtype: str | None = None) -> int:
        """vLLM's CPU cache: VLLM_CPU_KVCACHE_SPACE bytes in blocks of block_size tokens of every layer's K and V."""
        return int(self.kv_cache_bytes // (block_size * model.kv_bytes_per_token(kv_dtype)))

    def to_yaml(self) -> str:
        doc = {
            "kind": KIND,
            "name": self.name,
            "model": self.model_config,
            "step_model": self.step_model.as_dict(),
            "serving": {"per_step": self.serving.per_step, "per_seq": self.serving.per_seq,
                        "frontend_latency": self.serving.frontend_latency},
            "kv_cache_bytes": int(self.kv_cache_bytes),
            "scheduler": self.scheduler,
            "provenance": self.provenance,
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else profile_dir() / f"{self.name}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_yaml())
        return target


def load_profile(path: str | Path) -> CalibratedProfile:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ServesimError(f"profile {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ServesimError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ServesimError(f"{path}: not a calibrated profile (expected kind: {KIND}); write one with `servesim calibrate`")
    step = doc.get("step_model") or {}
    missing = [f for f in FEATURES if not isinstance(step.get(f), (int, float))]
    if missing:
        raise ServesimError(f"{path}: step_model lacks {', '.join(missing)}")
    serving = doc.get("serving") or {}
    unknown = set(serving) - {"per_step", "per_seq", "frontend_latency"}
    if unknown:
        raise ServesimError(f"{path}: unknown serving field {sorted(unknown)[0]!r}; valid: per_step, per_seq, frontend_latency")
    return CalibratedProfile(
        name=str(doc.get("name") or path.stem), model_config=doc["model"],
        step_model=LinearStepModel(**{f: float(step[f]) for f in FEATURES}),
        serving=ServingOverhead(**{k: float(v) for k, v in serving.items()}),
        kv_cache_bytes=int(doc["kv_cache_bytes"]), scheduler=dict(doc.get("scheduler") or {}),
        provenance=dict(doc.get("provenance") or {}),
    )


def find_profile(gpu: str) -> CalibratedProfile | None:
    """The profile `--gpu` names, or None when it names a catalog GPU or a plain device file."""
    if gpu.endswith((".yaml", ".yml")):
        path = Path(gpu)
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            return None  # the device loader reports a missing or broken file
        return load_profile(path) if isinstance(doc, dict) and doc.get("kind") == KIND else None
    path = profile_dir() / f"{gpu}.yaml"
    return load_profile(path) if path.exists() else None
