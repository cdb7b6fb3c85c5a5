"""The link a disaggregated cluster moves KV caches over, from prefill GPUs to decode GPUs.

- `nvlink`: both pools in one scale-up domain (same GPU model, NVLink or Infinity Fabric, all their GPUs
  within one node of `gpus_per_node`): the device's `link_bandwidth` and `link_latency`.
- `network`: scale-out RDMA between nodes, InfiniBand or RoCE (`network_kind`); both GPUs need the same
  fabric and a NIC (`network_bandwidth` per GPU, as in the catalog: 400 Gb/s = 50 GB/s for H100/H200 HGX
  with ConnectX-7 NDR, 200 Gb/s for A100 HDR).
- `auto` (default): nvlink when the pools can share a node, else the network.

Each GPU of a replica (tensor-parallel rank, pipeline stage) holds its share of the KV cache and sends it over
its own link, so a transfer moves at the bandwidth of min(prefill, decode GPUs per replica) links.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.errors import ServesimError, choices_error
from servesim.hardware.catalog import Device

KV_LINKS = ("auto", "nvlink", "network")
SCALE_UP = ("nvlink", "infinity-fabric")


@dataclass(frozen=True)
class Link:
    kind: str  # nvlink, infinity-fabric, infiniband, roce
    bandwidth: float  # bytes/s per GPU, one direction
    latency: float  # seconds per transfer

    def describe(self) -> dict:
        return {"kind": self.kind, "bandwidth_GB_s": self.bandwidth / 1e9, "latency_us": self.latency * 1e6}


def _scale_up(p: Device, d: Device, gpus: int) -> str | None:
    """Why the pools cannot share a scale-up domain, or None when they can."""
    if p.name != d.name:
        return f"prefill GPU {p.name} and decode GPU {d.name} differ"
    if p.link_kind not in SCALE_UP or p.link_bandwidth <= 0:
        return f"{p.name} has no NVLink-class link ({p.link_kind})"
    if gpus > p.gpus_per_node:
        return f"the pools use {gpus} GPUs, more than one {p.name} node's {p.gpus_per_node}"
    return None


def _network(p: Device, d: Device) -> str | None:
    if p.network_kind == "none" or p.network_bandwidth <= 0:
        return f"{p.name} has no scale-out NIC"
    if d.network_kind == "none" or d.network_bandwidth <= 0:
        return f"{d.name} has no scale-out NIC"
    if p.network_kind != d.network_kind:
        return f"{p.name} is on {p.network_kind} and {d.name} on {d.network_kind}"
    return None


def kv_link(kind: str, prefill: Device, decode: Device, total_gpus: int) -> Link:
    """The link between the pools; a clear error when the requested (or any) link does not exist."""
    if kind not in KV_LINKS:
        raise choices_error("KV link", kind, KV_LINKS)
    no_scale_up = _scale_up(prefill, decode, total_gpus)
    if kind == "nvlink" or (kind == "auto" and no_scale_up is None):
        if no_scale_up:
            raise ServesimError(f"--kv-link nvlink: no NVLink between the pools: {no_scale_up}; use --kv-link network")
        return Link(prefill.link_kind, prefill.link_bandwidth, prefill.link_latency)
    no_network = _network(prefill, decode)
    if no_network:
        extra = f"; nor NVLink: {no_scale_up}" if kind == "auto" else ""
        raise ServesimError(f"no link between the prefill pool ({prefill.name}) and the decode pool ({decode.name}): "
                            f"no common network, {no_network}{extra}")
    return Link(prefill.network_kind, min(prefill.network_bandwidth, decode.network_bandwidth),
                max(prefill.network_latency, decode.network_latency))
