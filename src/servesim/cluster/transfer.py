"""KV-cache transfer from a prefill replica to a decode replica, timed by bytes over the link.

A prefill replica's outgoing links and a decode replica's incoming links carry one transfer at a time, in
the order prefills finish (a FIFO per endpoint). A transfer of `tokens` prompt tokens moves
`tokens * kv_bytes_per_token` bytes at the bandwidth of min(prefill, decode GPUs per replica) links, then pays
the link latency once. With layer-wise pipelining (as vLLM's and Mooncake's connectors can), a layer's KV leaves as
soon as it is computed: the transfer may start with the request's first prefill step and ends no earlier
than one layer's share after the prefill ends.
"""

from __future__ import annotations

from servesim.hardware.links import Link


class KVTransfer:
    def __init__(self, link: Link, kv_bytes_per_token: float, prefill_gpus: int, decode_gpus: int, num_layers: int,
                 layerwise: bool, num_prefill: int, num_decode: int):
        self.link = link
        self.bytes_per_token = kv_bytes_per_token
        self.bandwidth = link.bandwidth * min(prefill_gpus, decode_gpus)  # each GPU sends its shard on its own link
        self.num_layers = num_layers
        self.layerwise = layerwise
        self._out_free = [0.0] * num_prefill
        self._in_free = [0.0] * num_decode
        self.bytes_moved = 0.0
        self.busy_s = 0.0

    def send(self, tokens: int, src: int, dst: int, prefill_start: float, prefill_end: float) -> float:
        """Book the links for one request's KV; return when it has fully arrived."""
        size = tokens * self.bytes_per_token
        wire = size / self.bandwidth
        ready = prefill_start if self.layerwise else prefill_end
        start = max(ready, self._out_free[src], self._in_free[dst])
        end = start + wire
        if self.layerwise:
            end = max(end, prefill_end + wire / self.num_layers)
        self._out_free[src] = self._in_free[dst] = end
        self.bytes_moved += size
        self.busy_s += wire
        return end + self.link.latency
