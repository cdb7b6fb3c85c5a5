"""Roofline step cost: each operator takes max(FLOPs / peak, bytes / bandwidth), plus a fixed step overhead.

An upper bound on speed (real kernels reach a fraction of peak); the calibrated GPU model refines it.
Formulas are written once for scalars and numpy arrays alike, so a span of decode steps costs exactly
what the same steps cost one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import DTYPE_BYTES, ModelSpec
from servesim.perf.base import StepShape

ACT_BYTES = 2.0  # activations stay in bf16, also under fp8 weights
ELEMENTWISE_PASSES = 12  # hidden-sized reads+writes per token per layer: 2 norms, residuals, RoPE, SiLU*mul


@dataclass(frozen=True)
class RooflineModel:
    model: ModelSpec
    device: Device
    tp: int = 1
    kv_dtype: str | None = None
    step_overhead: float | None = None  # seconds; default: the device's
    compute_efficiency: float = 1.0
    memory_efficiency: float = 1.0

    def __post_init__(self):
        m = self.model
        if m.num_heads % self.tp or m.intermediate_size % self.tp:
            raise ServesimError(f"--tp {self.tp} does not divide {m.name}'s {m.num_heads} heads; valid: 1, 2, 4, 8 dividing it")
        w = m.bytes_per_param
        tp = self.tp
        flops = self.device.peak_flops(m.dtype) * self.compute_efficiency
        bw = self.device.mem_bandwidth * self.memory_efficiency
        h, q, kv, inter = m.hidden_size, m.q_size, m.kv_size, m.intermediate_size
        # (K, N) of each GEMM per layer on one GPU: qkv, o, gate+up, down.
        gemms = [(h, (q + 2 * kv) / tp), (q / tp, h), (h, 2 * inter / tp), (inter / tp, h)]
        object.__setattr__(self, "_flops", flops)
        object.__setattr__(self, "_bw", bw)
        object.__setattr__(self, "_gemms", gemms)
        object.__setattr__(self, "_wbytes", w)
        kv_bytes = DTYPE_BYTES[self.kv_dtype or m.dtype]
        object.__setattr__(self, "_kv_token_bytes", 2 * kv / tp * kv_bytes)  # K and V of one token, one layer
        object.__setattr__(self, "_q_per_gpu", q / tp)
        overhead = self.device.step_overhead if self.step_overhead is None else self.step_overhead
        object.__setattr__(self, "_overhead", overhead)

    # --- operators (work on floats and numpy arrays) ---

    def _linear(self, tokens):
        total = 0.0
        for k, n in self._gemms:
            compute = 2.0 * tokens * k * n / self._flops
            memory = (k * n * self._wbytes + tokens * (k + n) * ACT_BYTES) / self._bw
            total = total + np.maximum(compute, memory)
        return total * self.model.num_layers

    def _attention(self, pairs, kv_tokens, new_tokens):
        compute = 4.0 * pairs * self._q_per_gpu / self._flops
        memory = (kv_tokens * self._kv_token_bytes + 2.0 * new_tokens * self._q_per_gpu * ACT_BYTES) / self._bw
        return np.maximum(compute, memory) * self.model.num_layers

    def _lm_head(self, sampled):
        m = self.model
        n = m.vocab_size / self.tp
        compute = 2.0 * sampled * m.hidden_size * n / self._flops
        memory = (m.hidden_size * n * self._wbytes + sampled * n * 4.0) / self._bw
        return np.maximum(compute, memory)

    def _elementwise(self, tokens):
        return tokens * self.model.hidden_size * ACT_BYTES * ELEMENTWISE_PASSES * self.model.num_layers / self._bw

    def _allreduce(self, tokens):
        if self.tp == 1:
            return 0.0
        d = self.device
        message = tokens * self.model.hidden_size * ACT_BYTES
        one = 2.0 * (self.tp - 1) / self.tp * message / d.link_bandwidth + d.link_latency
        return 2.0 * self.model.num_layers * one

    def _decode_time(self, num_seqs, kv_tokens):
        attention = self._attention(kv_tokens, kv_tokens, num_seqs)
        return (
            self._overhead
            + self._linear(num_seqs)
            + attention
            + self._lm_head(num_seqs)
            + self._elementwise(num_seqs)
            + self._allreduce(num_seqs)
        )

    # --- StepCostModel ---

    def step_time(self, s: StepShape) -> float:
        if s.prefill_seqs == 0:
            return float(self._decode_time(s.num_tokens, s.decode_kv_tokens))
        attention = self._attention(s.prefill_attn_pairs, s.prefill_kv_tokens, s.prefill_tokens)
        if s.decode_seqs:
            attention = attention + self._attention(s.decode_kv_tokens, s.decode_kv_tokens, s.decode_seqs)
        return float(
            self._overhead
            + self._linear(s.num_tokens)
            + attention
            + self._lm_head(s.num_sampled)
            + self._elementwise(s.num_tokens)
            + self._allreduce(s.num_tokens)
        )

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        kv = kv_tokens + num_seqs * np.arange(steps, dtype=np.float64)
        return np.asarray(self._decode_time(num_seqs, kv), dtype=np.float64)
