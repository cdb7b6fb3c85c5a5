"""Accelerator spec sheets: peak dense tensor FLOP/s, memory bandwidth and size, links.

Numbers are vendor spec-sheet values (dense, without sparsity), cross-checked against the system files of
NVIDIA's aiconfigurator (Apache-2.0) where it has one; see NOTICE. Bandwidths are per GPU, one direction.
A CPU (or any other device) is described by the same fields in a YAML file: `--gpu path/to/device.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from servesim.errors import ServesimError, choices_error

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Device:
    name: str
    bf16_flops: float  # dense tensor-core FLOP/s
    fp8_flops: float  # 0 where the device has no FP8 tensor cores
    mem_bandwidth: float  # bytes/s
    mem_bytes: float
    link_bandwidth: float  # scale-up link (NVLink / Infinity Fabric / PCIe), bytes/s per GPU per direction
    link_latency: float = 10e-6
    link_kind: str = "nvlink"
    network_bandwidth: float = 50e9  # scale-out NIC per GPU (InfiniBand/RoCE), bytes/s per direction
    network_latency: float = 20e-6
    network_kind: str = "infiniband"  # the scale-out fabric: infiniband, roce, or none (hardware/links.py)
    pcie_bandwidth: float = 64e9
    gpus_per_node: int = 8
    step_overhead: float = 0.0  # engine CPU time per step that does not overlap the GPU (s); calibrated profiles set it
    vendor: str = "nvidia"
    sms: int = 0  # streaming multiprocessors (compute units on AMD): wave quantisation of kernels
    visible_mem_bytes: float = 0.0  # total memory as cudaMemGetInfo reports it (what vLLM scales); 0: mem_bytes
    l2_bytes: float = 0.0  # last-level on-chip cache in front of HBM (L2; AMD: Infinity Cache); 0: none modelled

    @property
    def total_visible_bytes(self) -> float:
        return self.visible_mem_bytes or self.mem_bytes

    @property
    def has_fp8(self) -> bool:
        return self.fp8_flops > 0

    def peak_flops(self, dtype: str) -> float:
        if dtype == "fp8":
            if not self.has_fp8:
                with_fp8 = ", ".join(d.name for d in _CATALOG.values() if d.has_fp8)
                raise ServesimError(f"{self.name} has no FP8 tensor cores; use --dtype bf16 or one of: {with_fp8}")
            return self.fp8_flops
        return self.bf16_flops


_CATALOG = {
    d.name: d
    for d in [
        # H100 SXM5 80GB: 989 TFLOPS BF16 / 1979 FP8 dense, 3.35 TB/s HBM3, NVLink 4 900 GB/s bidirectional.
        # 132 SMs; vLLM logs report total_gpu_memory 79.11 GiB on H100 80GB.
        Device("h100", 989e12, 1979e12, 3.35e12, 80 * GiB, 450e9, pcie_bandwidth=64e9, network_bandwidth=50e9,
               sms=132, visible_mem_bytes=79.11 * GiB, l2_bytes=50 * MiB),
        # H200 SXM 141GB: H100 compute, 4.8 TB/s HBM3e. vLLM logs report total_gpu_memory 139.81 GiB on H200;
        # the driver reports 60 MiB of L2 (torch's L2_cache_size on a lent H200, measurements/h200/kernels).
        Device("h200", 989e12, 1979e12, 4.8e12, 141 * GiB, 450e9, pcie_bandwidth=64e9, network_bandwidth=50e9,
               sms=132, visible_mem_bytes=139.81 * GiB, l2_bytes=60 * MiB),
        # A100 SXM4 80GB: 312 TFLOPS BF16, no FP8, 2.039 TB/s HBM2e, NVLink 3 600 GB/s bidirectional.
        # 108 SMs, 40 MB L2; vLLM logs report total_gpu_memory 79.15 GiB on A100-SXM4-80GB.
        Device("a100", 312e12, 0.0, 2.039e12, 80 * GiB, 300e9, pcie_bandwidth=32e9, network_bandwidth=25e9,
               sms=108, visible_mem_bytes=79.15 * GiB, l2_bytes=40 * MiB),
        # B200 (HGX): 2.25 PFLOPS BF16 / 4.5 FP8 dense, 7.7 TB/s HBM3e, 180 GB, NVLink 5 1.8 TB/s bidirectional.
        # 126 MB L2 over its two dies.
        Device("b200", 2250e12, 4500e12, 7.7e12, 180 * GiB, 900e9, pcie_bandwidth=128e9, network_bandwidth=100e9,
               sms=148, l2_bytes=126 * MiB),
        # L40S: 362 TFLOPS BF16 / 733 FP8 dense, 864 GB/s GDDR6, 48 GB, 96 MB L2, PCIe 4.0 only (no NVLink).
        # PCIe servers ship with Ethernet NICs: RoCE, 400 GbE per GPU.
        Device("l40s", 362.05e12, 733e12, 864e9, 46068 * 1024**2, 32e9, link_kind="pcie", pcie_bandwidth=32e9,
               sms=142, network_kind="roce", l2_bytes=96 * MiB),
        # MI300X: 1307 TFLOPS BF16 / 2615 FP8 dense, 5.3 TB/s HBM3, 192 GB, 256 MB Infinity Cache, Infinity Fabric
        # 7 x 64 GB/s per direction.
        # (AMD's reference MI300X clusters scale out over RoCE, 400 GbE per GPU.)
        Device("mi300x", 1307.4e12, 2614.9e12, 5.3e12, 192 * GiB, 448e9, link_kind="infinity-fabric", vendor="amd",
               sms=304, network_kind="roce", l2_bytes=256 * MiB),
    ]
}
_ALIASES = {
    "h100-sxm": "h100", "h100_sxm": "h100", "h100-80gb": "h100", "h200-sxm": "h200", "h200_sxm": "h200",
    "a100-80gb": "a100", "a100_sxm": "a100", "a100-sxm": "a100", "b200-sxm": "b200", "mi300": "mi300x",
}


def list_devices() -> list[Device]:
    return list(_CATALOG.values())


def get_device(name: str) -> Device:
    """A catalog device by name, or a device described in a YAML file (path ending in .yaml/.yml)."""
    if name.endswith((".yaml", ".yml")):
        return load_device(name)
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _CATALOG:
        raise choices_error("GPU", name, list(_CATALOG), where="or a device YAML file")
    return _CATALOG[key]


def _number(value, path: Path, key: str) -> float:
    """YAML 1.1 reads `1.0e12` as a string; accept any numeric spelling."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number >= 0:
        raise ServesimError(f"{path}: field {key!r} must be a non-negative number, got {value!r}")
    return number


def load_device(path: str | Path) -> Device:
    """A device from YAML with Device's field names; FLOP/s, bytes/s and bytes as plain numbers."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ServesimError(f"device file {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ServesimError(f"{path}{line}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise ServesimError(f"{path}: expected a mapping of device fields")
    known = {f.name: f for f in fields(Device)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ServesimError(f"{path}: unknown field {unknown[0]!r}; valid fields: {', '.join(known)}")
    required = ("name", "bf16_flops", "mem_bandwidth", "mem_bytes")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ServesimError(f"{path}: missing field {missing[0]!r} (required: {', '.join(required)})")
    values = {"fp8_flops": 0.0, "link_bandwidth": 0.0, "link_kind": "none", "network_bandwidth": 0.0,
              "network_kind": "none", **raw}
    for key, value in values.items():
        if known[key].type in ("float", "int"):
            values[key] = _number(value, path, key)
            if known[key].type == "int":
                values[key] = int(values[key])
    return Device(**values)
