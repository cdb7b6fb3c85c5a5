"""Roofline step cost: each operator takes max(FLOPs / peak, bytes / bandwidth), plus a fixed step overhead.

An upper bound on speed (real kernels reach a fraction of peak); the calibrated GPU model refines it.
A decode step's time is `fixed(batch) + attention(KV tokens)`; a span of decode steps evaluates the same
expression on an array of KV sums, so the span costs exactly what the steps cost one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    _c: dict = field(init=False, repr=False, compare=False)
    _fixed_by_batch: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        m = self.model
        if m.num_heads % self.tp:
            raise ServesimError(f"--tp {self.tp} does not divide {m.name}'s {m.num_heads} heads; valid: 1, 2, 4, 8 dividing it")
        tp = self.tp
        flops = self.device.peak_flops(m.dtype) * self.compute_efficiency
        bw = self.device.mem_bandwidth * self.memory_efficiency
        h, q, kv, inter, layers = m.hidden_size, m.q_size, m.kv_size, m.intermediate_size, m.num_layers
        # Each GEMM per layer on one GPU as (K, N): qkv, o, gate+up, down.
        gemms = [(h, (q + 2 * kv) / tp), (q / tp, h), (h, 2 * inter / tp), (inter / tp, h)]
        q_gpu = q / tp
        vocab = m.vocab_size / tp
        c = {
            # per GEMM: time = max(flop_per_token * T, weight_time + act_per_token * T)
            "gemms": [(2.0 * k * n / flops, k * n * m.bytes_per_param / bw, (k + n) * ACT_BYTES / bw) for k, n in gemms],
            "layers": float(layers),
            # attention per layer: compute per QK pair, memory per KV token read and per new token's q/o
            "attn_pair": 4.0 * q_gpu / flops,
            "attn_kv": 2 * kv / tp * DTYPE_BYTES[self.kv_dtype or m.dtype] / bw,
            "attn_token": 2.0 * q_gpu * ACT_BYTES / bw,
            "lm_row": 2.0 * h * vocab / flops,
            "lm_weights": h * vocab * m.bytes_per_param / bw,
            "lm_row_bytes": vocab * 4.0 / bw,
            "elementwise": h * ACT_BYTES * ELEMENTWISE_PASSES * layers / bw,
            "overhead": self.device.step_overhead if self.step_overhead is None else self.step_overhead,
            "allreduce_token": 0.0 if tp == 1 else 2.0 * layers * 2.0 * (tp - 1) / tp * h * ACT_BYTES / self.device.link_bandwidth,
            "allreduce_latency": 0.0 if tp == 1 else 2.0 * layers * self.device.link_latency,
        }
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_fixed_by_batch", {})

    def _fixed(self, tokens: int, sampled: int) -> float:
        """Everything but attention: GEMMs, LM head, elementwise, all-reduce, overhead."""
        c = self._c
        linear = 0.0
        for per_flop, weights, per_act in c["gemms"]:
            linear += max(per_flop * tokens, weights + per_act * tokens)
        lm = max(c["lm_row"] * sampled, c["lm_weights"] + c["lm_row_bytes"] * sampled)
        allreduce = c["allreduce_token"] * tokens + c["allreduce_latency"] if c["allreduce_token"] else 0.0
        return c["overhead"] + linear * c["layers"] + lm + c["elementwise"] * tokens + allreduce

    def _attention(self, pairs, kv_tokens, new_tokens, maximum=max):
        c = self._c
        return maximum(c["attn_pair"] * pairs, c["attn_kv"] * kv_tokens + c["attn_token"] * new_tokens) * c["layers"]

    # --- StepCostModel ---

    def step_time(self, s: StepShape) -> float:
        if s.prefill_seqs == 0:
            return self._decode_fixed(s.num_tokens) + self._attention(s.decode_kv_tokens, s.decode_kv_tokens, s.decode_seqs)
        attention = self._attention(s.prefill_attn_pairs, s.prefill_kv_tokens, s.prefill_tokens)
        if s.decode_seqs:
            attention += self._attention(s.decode_kv_tokens, s.decode_kv_tokens, s.decode_seqs)
        return self._fixed(s.num_tokens, s.num_sampled) + attention

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        return self.decode_times(num_seqs, kv_tokens + num_seqs * np.arange(steps, dtype=np.float64))

    def decode_times(self, num_seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        kv = np.asarray(kv_tokens, dtype=np.float64)
        return self._decode_fixed(num_seqs) + self._attention(kv, kv, num_seqs, np.maximum)

    def decode_span_until(self, num_seqs: int, kv_tokens: int, max_steps: int, now: float, horizon: float) -> list:
        """Scalar loop: most spans are a few dozen steps, where it beats numpy's per-call overhead."""
        fixed = self._decode_fixed(num_seqs)
        c = self._c
        pair, per_kv, per_new, layers = c["attn_pair"], c["attn_kv"], c["attn_token"] * num_seqs, c["layers"]
        ends = []
        kv = kv_tokens
        for _ in range(max_steps):
            now += fixed + max(pair * kv, per_kv * kv + per_new) * layers
            ends.append(now)
            if now >= horizon:
                break
            kv += num_seqs
        return ends

    def _decode_fixed(self, num_seqs: int) -> float:
        cache = self._fixed_by_batch  # batch sizes repeat across the steps of a run
        value = cache.get(num_seqs)
        if value is None:
            value = cache[num_seqs] = self._fixed(num_seqs, num_seqs)
        return value
