"""A simulation run's configuration: CLI flags and YAML files fill the same fields, checked in one place."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from servesim.errors import ServesimError

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(ms|us|s|m|min|h)?\s*$", re.IGNORECASE)
_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: Any, what: str = "duration") -> float:
    """Seconds from 0.5, "500ms", "2s", "1.5m"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ServesimError(f"{what} {value!r} is not a duration; write e.g. 500ms, 0.5s, 2m")
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower() if m.group(2) else None]
    if seconds < 0:
        raise ServesimError(f"{what} must be >= 0, got {value!r}")
    return seconds


@dataclass
class RunConfig:
    # what is served, on what
    model: str = "llama-3.1-8b"
    model_config: str | None = None
    gpu: str = "h100"
    tp: int = 1
    pp: int = 1
    dtype: str = "bf16"
    kv_cache_dtype: str | None = None
    policy: str = "vllm-v1"
    policy_options: str | None = None  # KEY=NUMBER,... for the policy (docs/policies.md)
    # cluster: co-located replicas behind a router, or disaggregated prefill/decode pools (GPU:TPxN)
    replicas: int = 1
    router: str = "round-robin"
    router_load_cap: int = 4
    prefill_pool: str | None = None
    decode_pool: str | None = None
    kv_link: str = "auto"
    kv_layerwise: bool = False
    # the GPU clock
    cost_model: str = "calibrated"
    engine: str = "vllm"  # whose kernels and host overhead: vllm, sglang, trtllm
    kernels: str | None = None  # a calibration file from `servesim calibrate --kernels` (overrides the bundled fit)
    interconnect: str | None = None  # nvlink (the catalog's link) or pcie
    # workload
    workload: str | None = "chat"
    trace: str | None = None
    trace_format: str = "auto"
    limit: int | None = None
    time_scale: float = 1.0
    isl: int | None = None
    osl: int | None = None
    lengths: str | None = None
    arrival: str | None = None
    burstiness: float | None = None
    qps: float | None = None
    concurrency: int | None = None
    think_time: float = 0.0
    requests: int | None = None
    duration: float | None = None
    clients: str | None = None
    # engine (vLLM's names; None = vLLM's default for the device)
    block_size: int = 16
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    watermark: float = 0.0
    enforce_eager: bool = False
    step_overhead: float | None = None
    # service level objectives
    slo_ttft: float | None = None
    slo_tpot: float | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


_FIELDS = {f.name: f for f in fields(RunConfig)}
_DURATION_FIELDS = {"slo_ttft", "slo_tpot", "think_time", "duration", "step_overhead"}
_SECTIONS = {"workload": "", "engine": "", "slo": "slo_", "cluster": ""}  # nested YAML sections and their key prefix
_POOL_FIELDS = {"prefill_pool", "decode_pool"}


def _yaml_lines(path: Path, text: str) -> dict[tuple[str, ...], int]:
    """Line number of each key, so errors can say file:line."""
    lines: dict[tuple[str, ...], int] = {}
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ServesimError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None

    def walk(n, prefix):
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = prefix + (str(k.value),)
                lines[key] = k.start_mark.line + 1
                walk(v, key)

    walk(node, ())
    return lines


def _coerce(name: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if name in _POOL_FIELDS and isinstance(value, dict):  # {gpu: h100, tp: 2, count: 3} = "h100:2x3"
        unknown = sorted(set(value) - {"gpu", "tp", "count"})
        if unknown or "gpu" not in value:
            raise ServesimError(f"{where}: {name} takes gpu, tp and count (or the string GPU:TPxN), got {sorted(value)}")
        return f"{value['gpu']}:{value.get('tp', 1)}x{value.get('count', 1)}"
    if name in _DURATION_FIELDS:
        return parse_duration(value, f"{where}: {name}")
    kind = _FIELDS[name].type
    if "bool" in kind:
        if not isinstance(value, bool):
            raise ServesimError(f"{where}: {name} must be true or false, got {value!r}")
        return value
    if "int" in kind:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ServesimError(f"{where}: {name} must be an integer, got {value!r}")
        return value
    if "float" in kind:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ServesimError(f"{where}: {name} must be a number, got {value!r}")
        return float(value)
    return str(value)


def load_config(path: str | Path, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a run YAML into RunConfig field values. Keys may be flat (`qps: 5`) or grouped under
    `workload:`, `engine:`, `cluster:` and `slo:` (`slo: {ttft: 500ms}`). Top-level keys in `reserved` (a
    sweep's `grid:`) are left to the caller."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ServesimError(f"config file {str(path)!r} does not exist") from None
    lines = _yaml_lines(path, text)
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ServesimError(f"{path}:1: expected a mapping of settings")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in reserved:
            continue
        if key in _SECTIONS and isinstance(value, dict):
            for sub, subvalue in value.items():
                name = _SECTIONS[key] + sub
                _set(values, name, subvalue, f"{path}:{lines.get((key, sub), '?')}")
        else:
            _set(values, key, value, f"{path}:{lines.get((key,), '?')}")
    return values


def setting(name: str, value: Any, where: str) -> tuple[str, Any]:
    """One setting by its YAML name (`max-num-seqs` or `max_num_seqs`), checked and converted like the file's."""
    values: dict[str, Any] = {}
    _set(values, name, value, where)
    return next(iter(values.items()))


def _set(values: dict, name: str, value: Any, where: str) -> None:
    name = name.replace("-", "_")
    if name not in _FIELDS:
        raise ServesimError(f"{where}: unknown setting {name!r}; valid settings: {', '.join(_FIELDS)}")
    values[name] = _coerce(name, value, where)


def make_config(file_values: dict[str, Any] | None = None, **overrides: Any) -> RunConfig:
    """Defaults, then the YAML file's values, then explicitly given CLI flags (those not None)."""
    values = dict(file_values or {})
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    return RunConfig(**values)
