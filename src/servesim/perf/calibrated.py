"""Calibrated GPU step cost: every operator of a dense transformer step priced by its fitted kernel model.

Per layer, on one GPU of a tensor-parallel group of `tp`: the QKV, O, gate+up and down GEMMs on the step's
token count (padded to the engine's CUDA-graph sizes); two RMSNorms, two residual adds, SiLU-and-mul and the
rotary embedding; flash attention of the prefill chunks (causal, over their cached context) and paged attention
of the decodes (their KV read); with tp > 1, two all-reduces of the hidden state. Per step: the embedding
lookup; the final norm, LM head, logit gather (tp > 1) and sampler for the sequences that sample. The engine's
host time (fixed plus per running request) either overlaps the GPU (async scheduling: the step lasts
max(GPU, host)) or adds to it; `step_overhead` adds a serial host time on top.

Pipeline parallelism over `pp` stages (layers split as vLLM splits them; the first stage also embeds, the last
also runs the LM head): vLLM keeps up to `pp` batches in flight, which servesim models as the step's batch cut
into M = min(pp, sequences) equal microbatches flowing through the stages. A step lasts
max(M * slowest stage, sum of stages + sends): the bottleneck stage's M microbatches, or one microbatch's trip
through the whole pipeline, whichever is longer. With one sequence there is no overlap; with balanced stages
and M = pp the step costs pp stage-times of 1/pp of the batch.

Decode steps use only +, *, / and max on kv_tokens (coefficients depend on the batch size alone), so a span of
decode steps evaluated on an array equals each step evaluated alone, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.columns import COMPILED, new_times, push, times_column
from servesim.vec_types import append, i64, vec
from servesim.errors import ServesimError
from servesim.hardware.catalog import Device
from servesim.models.spec import DTYPE_BYTES, ModelSpec
from servesim.perf.base import StepShape, StepTotals
from servesim.perf.kernels import dispatch, forms
from servesim.perf.kernels.calibrate import hardware
from servesim.perf.kernels.calibration import KernelCalibration, load_calibration
from servesim.perf.parallel import check_parallelism, cudagraph_sizes, pp_layer_split

ACT_BYTES = 2.0  # activations stay bf16 under fp8 weights
LOGIT_BYTES = 4.0  # the sampler works on fp32 logits
SAMPLER_PASSES = 4.0  # logits written, then read by softmax/top-k/top-p and the token draw

# XQA's multi-block rule inputs (sequences, KV heads, SMs, merge), or None for kernels without one
MultiBlock = tuple[float, float, float, float] | None
# (fixed s, s per effective KV token, starvation, split, tile, multi-block) of a decode attention call
DecodeAttention = tuple[float, float, float, float, float, MultiBlock]
# A decode step of b sequences: (host s, per-stage bases, per-stage weights, (starve, split, tile, multi-block),
# microbatches, send s). Typed element by element: compiled, the span loop's arithmetic stays on native floats.
DecodeCoeffs = tuple[float, list[float], list[float], tuple[float, float, float, MultiBlock], float, float]


class DecodeForm:
    """A decode step's coefficients in the plain-float form decode_span_until inlines (a class, not a tuple:
    compiled, its fields are read as native floats, where a tuple's are unboxed and type-checked one by one).
    Only for one pipeline stage: one microbatch, so the KV tokens are not divided (x / 1.0 is x, bit for bit)."""

    def __init__(self, serial: float, base: float, weight: float, host: float, starve: float, split: float,
                 tile: float):
        self.serial, self.base, self.weight, self.host = serial, base, weight, host
        self.starve, self.split, self.tile = starve, split, tile


class CalibratedModel:
    """StepCostModel for one replica of `tp` x `pp` GPUs running `engine`'s kernels."""

    def __init__(self, model: ModelSpec, device: Device, tp: int = 1, pp: int = 1, engine: str = "vllm",
                 kv_dtype: str | None = None, calibration: KernelCalibration | None = None,
                 step_overhead: float | None = None, max_tokens: int = 8192, max_num_seqs: int = 256,
                 interconnect: str | None = None, cuda_graphs: bool = True):
        check_parallelism(model, device, tp, pp)
        self.model, self.device, self.tp, self.pp, self.engine = model, device, tp, pp, engine
        self.cal = calibration or load_calibration(device, engine)
        cal = self.cal
        self.kv_bytes = DTYPE_BYTES[kv_dtype or ("bf16" if model.dtype == "fp8" else model.dtype)]
        self.stage_layers = pp_layer_split(model.num_layers, pp)
        self.heads = model.num_heads // tp
        self.kv_heads = max(1, model.num_kv_heads // tp)
        link = device.pcie_bandwidth if interconnect == "pcie" else device.link_bandwidth
        if link <= 0:
            raise ServesimError(f"{device.name} has no link bandwidth for tp/pp > 1; set link_bandwidth in its YAML")
        self._hw = forms.Hardware(device.bf16_flops, device.mem_bandwidth, device.sms or 100, link, device.l2_bytes)
        self._hw_gemm = hardware(device, f"gemm.{model.dtype}") if model.dtype == "fp8" else self._hw
        pp_link = link if tp * pp <= device.gpus_per_node else device.network_bandwidth
        self._hw_pp = forms.Hardware(device.bf16_flops, device.mem_bandwidth, device.sms or 100, pp_link,
                                     device.l2_bytes)
        gemm_dtype = "fp8" if model.dtype == "fp8" else "bf16"
        self._gemm = cal.get(f"gemm.{gemm_dtype}")
        self._gemm_tiles = dispatch.gemm_tiles(engine, gemm_dtype)
        self._gemm_bf16 = cal.get("gemm.bf16")
        self._prefill = cal.get("context_attention")
        self._prefill_form = forms.PrefillAttentionForm(self._prefill, self._hw, self.heads, self.kv_heads,
                                                        model.head_dim, self.kv_bytes)
        # TensorRT-LLM's decode runs one of several kernels by head layout, each fitted on its own (dispatch.py)
        kernel = dispatch.decode_kernel(engine, self.heads, self.kv_heads, model.head_dim, self.kv_bytes,
                                        hopper=cal.measured_on in dispatch.HOPPER)
        key = f"generation_attention.{kernel}"
        self._decode = cal.get(key if kernel and key in cal.coeffs else "generation_attention")
        self._shared_floor = float(min(self._decode[0], self._prefill[0]))  # the floor a mixed step pays once
        # ... and XQA splits long contexts by a rule of its own, which decode_kv applies step by step
        self._multi_block = kernel in dispatch.MULTI_BLOCK_KERNELS and key in cal.coeffs
        self._allreduce = cal.get("allreduce") if tp > 1 or pp > 1 else None
        self._elem = {op: cal.get(f"elementwise.{op}") for op in ("norm", "add", "act", "rope")}
        self._serial = device.step_overhead + (step_overhead or 0.0)
        self._host_fixed, self._host_per_seq, self._host_overlapped = cal.host_fixed, cal.host_per_seq, cal.host_overlapped
        # Token counts up to the step budget (and the running-request limit) are priced once, at construction.
        size = max(max_tokens, max_num_seqs) + 1
        m = np.arange(size, dtype=np.float64)
        if cuda_graphs:
            sizes = np.asarray(cudagraph_sizes(max_num_seqs, max_tokens), dtype=np.float64)
            idx = np.searchsorted(sizes, m)
            m = np.where(idx < len(sizes), sizes[np.minimum(idx, len(sizes) - 1)], m)
        m[0] = 0.0
        self._builders = {
            "layer": self._layer_dense,  # per layer: GEMMs, elementwise, all-reduces
            "embed": lambda tokens: self._elementwise("add", 4.0 * tokens * model.hidden_size, tokens),
            "head": self._lm_head,
        }
        tables = {"layer": self._layer_dense(m), "embed": self._builders["embed"](m),
                  "head": self._lm_head(np.arange(size, dtype=np.float64))}
        for table in tables.values():
            table[0] = 0.0
        # Plain floats, the same values: every step reads three entries, and a numpy array would box a numpy scalar.
        self._tables: dict[str, list[float]] = {name: table.tolist() for name, table in tables.items()}
        # The same lists, each in an attribute of its own: a step reads them without a dict lookup by name.
        self._layer_table: list[float] = self._tables["layer"]
        self._embed_table: list[float] = self._tables["embed"]
        self._head_table: list[float] = self._tables["head"]
        self._decode_cache: dict[int, DecodeCoeffs] = {}
        self._forms: list[DecodeForm | None] = []  # decode_form's answers by batch size (a list: no dict lookup)
        self._decode_attn_cache: list[DecodeAttention | None] = []  # by batch size (a list: no dict lookup)
        self._beyond: dict[tuple[str, int], float] = {}  # table entries priced past the tables' end
        # A step's prefill is most often one fresh prompt (no cached context): its attention price then depends on
        # the prompt length alone and is remembered per length (NaN: not yet), the same bits as pricing it again.
        # A flat column (servesim.columns), not a dict: no object per remembered price.
        self._fresh_prefill = times_column(size, math.nan)

    # --- operators, vectorised over token counts ---

    def _elementwise(self, op: str, traffic, rows):
        return forms.elementwise_time(self._elem[op], self._hw, traffic, rows)

    def _layer_dense(self, m):
        md, tp = self.model, self.tp
        h, q, kv, inter = md.hidden_size, md.q_size / tp, md.kv_size / tp, md.intermediate_size / tp
        w = md.bytes_per_param
        total = 0.0
        for n, k in ((q + 2 * kv, h), (h, q), (2 * inter, h), (h, inter)):
            total = total + forms.gemm_time(self._gemm, self._hw_gemm, m, n, k, w, self._gemm_tiles)
        total = total + 2 * self._elementwise("norm", 4.0 * m * h, m) + 2 * self._elementwise("add", 6.0 * m * h, m)
        total = total + self._elementwise("act", 6.0 * m * inter, m)
        total = total + self._elementwise("rope", 4.0 * m * (q + kv), m)
        if tp > 1:
            message = m * h * ACT_BYTES
            path = dispatch.allreduce_path(self.engine, m, message, float(tp))
            total = total + 2 * forms.allreduce_time(self._allreduce, self._hw, message, tp, path, m)
        return np.asarray(total, dtype=np.float64)

    def _lm_head(self, s):
        md, tp = self.model, self.tp
        vocab = md.vocab_size / tp
        t = forms.gemm_time(self._gemm_bf16, self._hw, np.maximum(s, 1.0), vocab, md.hidden_size, 2.0)
        t = t + self._elementwise("norm", 4.0 * s * md.hidden_size, s)
        # The sampler's passes over the logits are priced as streaming only (rows 0: no per-token-block wave term)
        t = t + self._elementwise("act", SAMPLER_PASSES * s * md.vocab_size * LOGIT_BYTES, 0.0)
        if tp > 1:  # gathering the vocabulary shards moves half what an all-reduce of the full logits would
            t = t + forms.allreduce_time(self._allreduce, self._hw, s * md.vocab_size * LOGIT_BYTES / 2, tp)
        return np.asarray(t, dtype=np.float64)

    def _send(self, tokens: float) -> float:
        if self.pp == 1:
            return 0.0
        allreduce = self._allreduce
        assert allreduce is not None, "pp > 1 prices sends with the all-reduce model"
        floor, two_shot_eff = allreduce[0], allreduce[3]  # a point-to-point copy at the link's efficiency
        one = floor + tokens * self.model.hidden_size * ACT_BYTES / (self._hw_pp.link_bandwidth * two_shot_eff)
        return (self.pp - 1) * one

    def _decode_attention(self, seqs: int) -> DecodeAttention:
        """(fixed s, s per effective KV token, starvation, split, tile, multi-block or None) for `seqs` decodes;
        see forms.decode_kv. Cached per `seqs`: mixed steps ask for it every step, and the form costs numpy scalar
        work."""
        known = self._decode_attn_cache
        if seqs >= len(known):
            known.extend([None] * (seqs + 1 - len(known)))
        cached = known[seqs]
        if cached is None:
            c = [float(x) for x in forms.decode_attention_coeffs(
                self._decode, self._hw, float(seqs), self.heads, self.kv_heads, self.model.head_dim, self.kv_bytes)]
            blocks: tuple[float, float, float, float] | None = None
            if self._multi_block:
                b = [float(x) for x in forms.decode_multi_block(self._decode, self._hw, float(seqs),
                                                                 float(self.kv_heads), c[1])]
                blocks = (b[0], b[1], b[2], b[3])
            cached = (c[0], c[1], c[2], c[3], c[4], blocks)
            known[seqs] = cached
        return cached

    def _table(self, name: str, m: int) -> float:
        """A per-token-count price from the tables built at construction; past their end (static batching has
        no step budget) no CUDA graph pads the step, and the same formula prices it on first use."""
        table = self._tables[name]
        if m < len(table):
            return table[m]
        key = (name, m)
        value = self._beyond.get(key)
        if value is None:
            value = self._beyond[key] = float(self._builders[name](np.asarray([float(m)]))[0])
        return value

    # --- decode steps: per stage, base + weight * effective KV tokens ---

    def _decode_coeffs(self, b: int) -> DecodeCoeffs:
        cached = self._decode_cache.get(b)
        if cached is not None:
            return cached
        micro = min(self.pp, b)
        mb = -(-b // micro)
        fixed, per_token, starve, split, tile, blocks = self._decode_attention(mb)
        layer = self._table("layer", mb) + fixed
        last = len(self.stage_layers) - 1
        bases, weights = [], []
        for s, layers in enumerate(self.stage_layers):
            base = layers * layer
            if s == 0:
                base += self._table("embed", mb)
            if s == last:
                base += self._table("head", mb)
            bases.append(base)
            weights.append(layers * per_token)
        cached = (self._host_fixed + self._host_per_seq * b, bases, weights, (starve, split, tile, blocks), float(micro),
                  self._send(mb))
        self._decode_cache[b] = cached
        return cached

    def _with_host(self, gpu, host: float):
        if self._host_overlapped:
            longer = np.maximum(gpu, host) if isinstance(gpu, np.ndarray) else max(gpu, host)  # same value either way
            return self._serial + longer
        return self._serial + (gpu + host)

    def _decode_time(self, b: int, kv_tokens):
        host, bases, weights, kv_shape, micro, send = self._decode_coeffs(b)
        effective = forms.decode_kv(kv_tokens / micro, *kv_shape)
        if self.pp == 1:
            return self._with_host(bases[0] + weights[0] * effective, host)
        maximum = np.maximum if isinstance(effective, np.ndarray) else max  # the same value either way
        stages = [base + weight * effective for base, weight in zip(bases, weights)]
        slowest = stages[0]
        for t in stages[1:]:
            slowest = maximum(slowest, t)
        return self._with_host(maximum(micro * slowest, sum(stages) + send), host)

    # --- StepCostModel ---

    def step_time(self, s: StepShape) -> float:
        return self.totals_time(StepTotals.of(s))

    def totals_time(self, s: StepTotals) -> float:
        """step_time of the step summed in `s` (the engine's call: no StepShape built)."""
        if s.prefill_seqs == 0:
            return float(self._decode_time(s.num_seqs, s.decode_kv_tokens))
        micro = min(self.pp, s.num_seqs)
        tokens = -(-s.num_tokens // micro)
        sampled = -(-s.num_sampled // micro) if s.num_sampled else 0
        remembered = self._fresh_prefill
        fresh = micro == 1 and s.prefill_seqs == 1 and s.prefill_kv_tokens == s.prefill_tokens < len(remembered)
        attn: float = remembered[s.prefill_tokens] if fresh else math.nan
        if attn != attn:  # NaN: not remembered
            attn = self._prefill_form.time(s.prefill_seqs / micro, s.prefill_tokens / micro,
                                           s.prefill_attn_pairs / micro, s.prefill_kv_tokens / micro)
            if fresh:
                remembered[s.prefill_tokens] = attn
        if s.decode_seqs:
            decode_seqs = -(-s.decode_seqs // micro)
            fixed, per_token, starve, split, tile, blocks = self._decode_attention(decode_seqs)
            kv: float = s.decode_kv_tokens / micro
            if blocks is None:  # forms.decode_kv in plain floats, op for op (its generic form boxes every value)
                k2, t2 = kv * kv, tile * tile
                kv = (k2 * k2 + t2 * t2) / (k2 * kv + t2 * tile)
                kv = kv + starve * kv * split / (split + kv)
            else:
                kv = float(forms.decode_kv(kv, starve, split, tile, blocks))
            # One varlen attention call serves both: it pays one launch floor, not two.
            attn += fixed + per_token * kv - self._shared_floor
        lt, et, ht = self._layer_table, self._embed_table, self._head_table  # _table, inlined for the usual sizes
        layer = (lt[tokens] if tokens < len(lt) else self._table("layer", tokens)) + attn
        host = self._host_fixed + self._host_per_seq * s.num_seqs
        if self.pp == 1:  # the stage loop below for one stage: the same operations in the same order
            t = (self.stage_layers[0] * layer + (et[tokens] if tokens < len(et) else self._table("embed", tokens))
                 + (ht[sampled] if sampled < len(ht) else self._table("head", sampled)))
            return self._serial + (max(t, host) if self._host_overlapped else t + host)
        last = len(self.stage_layers) - 1
        stages: list[float] = []
        for i, layers in enumerate(self.stage_layers):
            t = layers * layer
            if i == 0:
                t += self._table("embed", tokens)
            if i == last:
                t += self._table("head", sampled)
            stages.append(t)
        total = 0.0  # sum(stages), the same additions in plain floats
        for t in stages:
            total += t
        gpu = max(micro * max(stages), total + self._send(tokens))
        return float(self._with_host(gpu, host))

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        return self.decode_times(num_seqs, kv_tokens + num_seqs * np.arange(steps, dtype=np.float64))

    def decode_times(self, num_seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        return np.asarray(self._decode_time(num_seqs, np.asarray(kv_tokens, dtype=np.float64)), dtype=np.float64)

    def decode_form(self, num_seqs: int) -> DecodeForm | None:
        """The coefficients of a decode step of `num_seqs` sequences in the plain-float form decode_span_until
        inlines, where that form applies (one stage, the host overlapped, no multi-block kernel); None elsewhere."""
        if self.pp != 1 or not self._host_overlapped or self._multi_block:
            return None
        forms = self._forms
        if num_seqs < len(forms):
            known = forms[num_seqs]
            if known is not None:
                return known
        else:
            forms.extend([None] * (num_seqs + 1 - len(forms)))
        host, bases, weights, (starve, split, tile, _), _, _ = self._decode_coeffs(num_seqs)
        form = forms[num_seqs] = DecodeForm(self._serial, bases[0], weights[0], host, starve, split, tile)
        return form

    def decode_span_until(self, num_seqs: int, kv_tokens: int, max_steps: int, now: float,
                          horizon: float) -> vec[float]:
        """The same steps one by one in plain floats (cheaper than numpy for the usual short spans), stopping
        after the first that ends at or after `horizon`. The ends are a vec compiled (see servesim.columns)."""
        ends = new_times(min(max_steps, 1024))  # room for the usual span (SPAN_CHUNK steps at most)
        kv = float(kv_tokens)
        form = self.decode_form(num_seqs)
        if form is not None:  # _decode_time inlined, op for op
            serial, base, weight, host = form.serial, form.base, form.weight, form.host
            starve, split, tile = form.starve, form.split, form.tile
            t2 = tile * tile
            t4, t3 = t2 * t2, t2 * tile
            grow = float(num_seqs)  # kv += num_seqs converts it the same way, every step
            left: i64 = max_steps  # a count down, not `for _ in range()`: compiled, that boxed `_` every step
            while left > 0:
                left -= 1
                k = kv  # forms.decode_kv of kv / micro (micro is 1), inlined: a call per step costs more than this
                k2 = k * k
                k = (k2 * k2 + t4) / (k2 * k + t3)
                d = serial + max(base + weight * (k + starve * k * split / (split + k)), host)
                now += d
                if COMPILED:  # push(), inlined: a call per step costs as much as the arithmetic
                    ends = append(ends, now)
                else:
                    ends.append(now)  # type: ignore[attr-defined]  # from the sources: a list
                if now >= horizon:
                    break
                kv += grow
            return ends
        for _ in range(max_steps):
            d = float(self._decode_time(num_seqs, kv))
            now += d
            ends = push(ends, now)
            if now >= horizon:
                break
            kv += num_seqs
        return ends
