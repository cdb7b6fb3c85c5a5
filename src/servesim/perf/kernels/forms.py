"""The physical form of each kernel family's latency: roofline terms divided by a fitted efficiency surface.

Every form reads a GPU's spec sheet (peak FLOP/s, memory bandwidth, SM count, link bandwidth) and a handful of
fitted coefficients that are either dimensionless efficiencies (fractions of peak) or latencies in seconds.
Because the spec sheet carries the hardware, coefficients learnt on a measured GPU transfer to a GPU known only
from its spec sheet. All functions take floats or numpy arrays.

Shared pieces:
- smooth_max(a, b, p) = (a^p + b^p)^(1/p): compute- and memory-bound regimes blend instead of switching;
- wave utilisation: a kernel launching `ctas` thread blocks on `sms` SMs runs ceil(ctas/sms) waves, the last
  one partly idle; efficiency scales by (ctas / (waves * sms)) ** wave_exp (wave_exp < 1: libraries soften it
  with split-K and stream-K);
- floors: a kernel costs at least its launch/latency floor, however small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from servesim.perf.kernels import dispatch

TILE: Final = 128.0  # output tile edge (GEMM) and query tile (flash attention) of the Hopper/Ampere kernels measured


@dataclass(frozen=True)
class Hardware:
    """The spec-sheet numbers the forms need, for one GPU and one compute dtype."""

    peak_flops: float
    mem_bandwidth: float
    sms: int
    link_bandwidth: float = 0.0
    l2_bytes: float = 0.0


@dataclass(frozen=True)
class Family:
    name: str
    params: tuple[str, ...]
    initial: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def smooth_max(a, b, p):
    return (a**p + b**p) ** (1.0 / p)


def wave_util(ctas, sms):
    if isinstance(ctas, float):  # one step's shape: plain floats are far cheaper than numpy scalars
        ctas = max(ctas, 1.0)
        return ctas / (math.ceil(ctas / sms) * sms)
    ctas = np.maximum(ctas, 1.0)
    return ctas / (np.ceil(ctas / sms) * sms)


# --- GEMM: y[m, n] = x[m, k] @ w[k, n] -------------------------------------------------------------------

GEMM = Family(
    "gemm",
    ("floor", "k_latency", "compute_eff", "k_half", "wave_exp", "memory_eff", "sharpness", "act_passes",
     "row_cost", "small_tile_cost"),
    (3e-6, 2e-9, 0.8, 100.0, 0.3, 0.85, 3.0, 0.1, 1e-10, 0.2),
    (1e-7, 1e-12, 0.05, 1.0, 1e-3, 0.05, 1.0, 1e-4, 1e-14, 1e-4),
    (5e-5, 1e-7, 1.0, 1e4, 1.0, 1.2, 12.0, 20.0, 1e-7, 5.0),
)


def gemm_time(c, hw: Hardware, m, n, k, weight_bytes=2.0, tiles_by_m=None):
    """Seconds for one GEMM. FP8 adds the per-token quantisation of its input: `act_passes` passes over the
    activations and `row_cost` per row (the per-token scale). With the library's tile rule (`tiles_by_m`, see
    dispatch.py), the tensor cores compute whole tiles: the work is m, n, k rounded up to the tile the library
    picks for m (and the tile grid to whole thread-block clusters), and a tile smaller than 128 x 128 reuses each
    operand it loads fewer times (loads per FLOP grow as 1/tile_m + 1/tile_n): its efficiency drops by
    1 + `small_tile_cost` x (128/tile_m + 128/tile_n - 2)."""
    floor, k_latency, compute_eff, k_half, wave_exp, memory_eff, sharpness, act_passes, row_cost, small_tile_cost = c
    if tiles_by_m:
        tm, tn, tk, cm, cn = _tiles(tiles_by_m, m)
        tiles = np.ceil(np.ceil(m / tm) / cm) * cm * np.ceil(np.ceil(n / tn) / cn) * cn
        work = tiles * tm * tn * np.ceil(k / tk) * tk
        reuse = 1.0 + small_tile_cost * (TILE / tm + TILE / tn - 2.0)
    else:
        tiles = np.ceil(m / TILE) * np.ceil(n / TILE)
        work = m * n * k
        reuse = 1.0
    eff = compute_eff * k / (k + k_half) * wave_util(tiles, hw.sms) ** wave_exp / reuse
    compute = 2.0 * work / (hw.peak_flops * eff)
    traffic = (m * k + n * k) * weight_bytes + m * n * 2.0
    memory = traffic / (hw.mem_bandwidth * memory_eff)
    quant = (act_passes * m * k * 3.0 / hw.mem_bandwidth + row_cost * m) * (2.0 - weight_bytes)  # fp8 only
    return floor + k_latency * k + smooth_max(compute, memory, sharpness) + quant


def _tiles(rules, m):
    """(tile m, tile n, tile k, cluster m, cluster n) for rows m (float or array) under `rules`."""
    if isinstance(m, float):
        return next(rule[1:] for rule in rules if m <= rule[0])
    m = np.asarray(m, dtype=np.float64)
    out = [np.full(m.shape, rules[-1][i]) for i in (1, 2, 3, 4, 5)]
    for rule in reversed(rules[:-1]):
        small = m <= rule[0]
        out = [np.where(small, rule[i + 1], o) for i, o in enumerate(out)]
    return tuple(out)


# --- prefill attention: flash attention over chunks of new tokens on top of cached context -------------
# Aggregates over the sequences of one step: seqs, new tokens T = sum n, causal query-key pairs
# Q = sum(n*c + n(n+1)/2), KV tokens read K = sum(c + n).

PREFILL_ATTN = Family(
    "context_attention",
    ("floor", "seq_cost", "compute_eff", "head_dim_exp", "wave_exp", "memory_eff", "sharpness", "tile_cost",
     "fp8_cost", "group_exp", "wave_half", "fp8_head_dim_exp", "fp8_passes", "tile_head_exp", "fp8_math"),
    (1e-5, 1e-7, 0.6, 0.5, 0.5, 0.8, 3.0, 1e-8, 0.1, 0.1, 0.5, 1.0, 1.0, 0.5, 1e-4),
    (1e-7, 1e-12, 0.02, 1e-3, 1e-3, 0.05, 1.0, 1e-12, 1e-4, 1e-4, 1e-3, 1e-3, 1e-4, 1e-3, 1e-4),
    (2e-4, 1e-4, 1.0, 2.0, 1.0, 1.2, 12.0, 1e-5, 3.0, 1.0, 100.0, 6.0, 100.0, 1.0, 1.0),
)


def prefill_attention_time(c, hw: Hardware, seqs, tokens, pairs, kv_tokens, heads, kv_heads, head_dim, kv_bytes=2.0):
    (floor, seq_cost, compute_eff, head_dim_exp, wave_exp, memory_eff, sharpness, tile_cost, fp8_cost, group_exp,
     wave_half, fp8_head_dim_exp, fp8_passes, tile_head_exp, fp8_math) = c
    fp8 = 2.0 - kv_bytes
    # A sequence's last query tile is on average half full, and a sequence has at least one tile.
    # (max on one step's plain floats: a numpy scalar here would make every later operation numpy's, ~10x slower)
    # (Any: compiled by mypyc, a local inferred as float would refuse the arrays of a fit)
    at_least_one: Any = max(seqs, 1.0) if isinstance(seqs, float) else np.maximum(seqs, 1.0)
    q_tiles = seqs * smooth_max(tokens / (TILE * at_least_one) + 0.5, 1.0, 4.0)
    # Grouped-query heads share each K/V tile: larger groups use the tensor cores better.
    eff = compute_eff * (head_dim / 128.0) ** head_dim_exp * (heads / kv_heads / 4.0) ** group_exp
    # Tail-wave quantisation, and a ramp: with few waves of tiles per SM, the pipeline's fill and drain (the
    # first K/V loads, the last stores) are not hidden behind other tiles.
    waves = heads * q_tiles / hw.sms
    eff = eff * wave_util(heads * q_tiles, hw.sms) ** wave_exp * waves / (waves + wave_half)
    # Causal tiles on the diagonal are computed whole: about half a tile of extra keys per query. Engines that
    # do the attention math in fp8 over an fp8 cache gain `fp8_math` of the FP8 tensor cores' 2x (0: none).
    compute = 4.0 * heads * head_dim * (pairs + 0.5 * TILE * tokens) / (hw.peak_flops * eff * (1.0 + fp8_math * fp8))
    traffic = tokens * 2.0 * heads * head_dim * 2.0 + kv_tokens * 2.0 * kv_heads * head_dim * kv_bytes
    memory = traffic / (hw.mem_bandwidth * memory_eff)
    # An fp8 KV cache is dequantised in registers, tile by tile (wide heads pay more: register pressure),
    # and the new tokens' q, k, v take `fp8_passes` extra passes over memory to be scaled and converted.
    dequant = fp8_cost * (head_dim / 128.0) ** fp8_head_dim_exp * fp8
    convert = fp8 * fp8_passes * tokens * (heads + 2.0 * kv_heads) * head_dim * 2.0 / hw.mem_bandwidth
    kernel = smooth_max(compute, memory, sharpness) * (1.0 + dequant) + convert
    # Per query tile: the prologue and epilogue of its thread blocks (one per head, partly concurrent).
    return floor + seq_cost * seqs + tile_cost * heads**tile_head_exp * q_tiles + kernel


class PrefillAttentionForm:
    """prefill_attention_time of one step, in plain floats, op for op: the engine prices each step's prefill
    attention with it. Compiled, its arithmetic is native (the generic form boxes every value, ~16k instructions
    a call). tests/test_prefill_form.py holds the two equal bit for bit."""

    def __init__(self, c: list[float], hw: Hardware, heads: int, kv_heads: int, head_dim: int, kv_bytes: float):
        (self.floor, self.seq_cost, self.compute_eff, self.head_dim_exp, self.wave_exp, self.memory_eff,
         self.sharpness, self.tile_cost, self.fp8_cost, self.group_exp, self.wave_half, self.fp8_head_dim_exp,
         self.fp8_passes, self.tile_head_exp, self.fp8_math) = [float(x) for x in c]
        # Ints become floats exactly, and Python's int-and-float operators convert them the same way.
        self.peak_flops, self.mem_bandwidth, self.sms = float(hw.peak_flops), float(hw.mem_bandwidth), float(hw.sms)
        self.heads, self.kv_heads, self.head_dim = float(heads), float(kv_heads), float(head_dim)
        self.kv_bytes = float(kv_bytes)

    def time(self, seqs: float, tokens: float, pairs: float, kv_tokens: float) -> float:
        # math.pow, not **: compiled, mypyc's ** on floats is generic; both are libm's pow on these positive values.
        heads, kv_heads, head_dim, kv_bytes, sms = self.heads, self.kv_heads, self.head_dim, self.kv_bytes, self.sms
        fp8 = 2.0 - kv_bytes
        at_least_one = 1.0 if 1.0 > seqs else seqs  # max(seqs, 1.0): max keeps the first unless the second is larger
        q = tokens / (TILE * at_least_one) + 0.5
        q_tiles = seqs * math.pow(math.pow(q, 4.0) + math.pow(1.0, 4.0), 1.0 / 4.0)  # smooth_max(q, 1.0, 4.0)
        eff = self.compute_eff * math.pow(head_dim / 128.0, self.head_dim_exp) * math.pow(heads / kv_heads / 4.0, self.group_exp)
        waves = heads * q_tiles / sms
        ctas = heads * q_tiles  # wave_util(ctas, sms)
        if 1.0 > ctas:
            ctas = 1.0
        util = ctas / (math.ceil(ctas / sms) * sms)
        eff = eff * math.pow(util, self.wave_exp) * waves / (waves + self.wave_half)
        compute = 4.0 * heads * head_dim * (pairs + 0.5 * TILE * tokens) / (self.peak_flops * eff * (1.0 + self.fp8_math * fp8))
        traffic = tokens * 2.0 * heads * head_dim * 2.0 + kv_tokens * 2.0 * kv_heads * head_dim * kv_bytes
        memory = traffic / (self.mem_bandwidth * self.memory_eff)
        dequant = self.fp8_cost * math.pow(head_dim / 128.0, self.fp8_head_dim_exp) * fp8
        convert = fp8 * self.fp8_passes * tokens * (heads + 2.0 * kv_heads) * head_dim * 2.0 / self.mem_bandwidth
        p = self.sharpness
        kernel = math.pow(math.pow(compute, p) + math.pow(memory, p), 1.0 / p) * (1.0 + dequant) + convert  # smooth_max(compute, memory, p)
        return self.floor + self.seq_cost * seqs + self.tile_cost * math.pow(heads, self.tile_head_exp) * q_tiles + kernel


# --- decode attention: one query token per sequence over its paged KV ------------------------------------
# Written as a(seqs) + b(seqs) * kv_tokens, so a span of decode steps (kv_tokens growing) is exact.

DECODE_ATTN = Family(
    "generation_attention",
    ("floor", "seq_cost", "kv_head_exp", "compute_eff", "memory_eff", "par_half", "par_exp", "sharpness", "dequant",
     "split_context", "mha_split", "kv_tile", "head_weight", "dequant_fixed", "relayout", "split_below", "alias_hit",
     "alias_reach", "overlap", "free_wave", "merge_cost", "rope_pass"),
    (1e-5, 2e-7, 0.5, 0.3, 0.85, 8.0, 0.5, 3.0, 0.1, 4096.0, 1.0, 128.0, 0.05, 0.05, 1e-6, 1.0, 1.0, 1.0, 1e-3, 1e-2,
     4e-9, 2e-6),
    (1e-7, 1e-12, 1e-3, 0.01, 0.05, 1e-3, 1e-3, 1.0, 1e-4, 16.0, 1e-2, 16.0, 1e-5, 1e-4, 1e-9, 0.05, 1e-3, 1e-2, 1e-4,
     1e-3, 1e-12, 1e-9),
    (2e-4, 1e-4, 2.0, 1.0, 1.2, 1e4, 2.0, 12.0, 3.0, 1e7, 1e5, 1024.0, 10.0, 3.0, 5e-5, 8.0, 1.0, 1e4, 1.0, 16.0, 1e-5,
     5e-5),
)
SPLIT_CUTOFF_EXP = 4.0  # how sharply splitting stops as the (sequence, KV head) pairs pass split_below x SMs


def decode_attention_coeffs(c, hw: Hardware, seqs, heads, kv_heads, head_dim, kv_bytes=2.0, kv_alias=0.0):
    """(fixed s, s per KV token, starvation, split context, tile) of a decode attention call: see decode_kv.

    `kv_alias`: the share of V bytes a benchmark whose V pages are its K pages re-reads from L2 (a measurement
    artefact, see samples.read_aiconfigurator and decode_attention_time). Real serving has distinct K and V
    pages: servesim's clock never sets it, so it only keeps the artefact out of the other coefficients while
    fitting."""
    (floor, seq_cost, kv_head_exp, compute_eff, memory_eff, par_half, par_exp, sharpness, dequant, split_context,
     mha_split, kv_tile, head_weight, dequant_fixed, relayout, split_below, alias_hit, alias_reach, overlap, free_wave,
     merge_cost, rope_pass) = c
    per_token_compute = 4.0 * heads * head_dim / (hw.peak_flops * compute_eff)
    # An 8-bit cache halves the bytes but pays for dequantising them, per token and per call (scales, setup).
    kv_traffic = (2.0 - kv_alias) * kv_heads * head_dim * kv_bytes * (1.0 + dequant * (2.0 - kv_bytes))
    per_token_memory = kv_traffic / (hw.mem_bandwidth * memory_eff)
    # Few (sequence, kv-head) pairs cannot keep every SM streaming KV, unless contexts are long enough for
    # the kernel to split each one: the loss fades as the context passes `split_context`. Libraries split
    # grouped-query decode readily but not always multi-head (group 1) decode: `mha_split` scales the context
    # at which a group-1 call splits. Split heuristics (FlashAttention's, FlashInfer's) stop splitting once the
    # pairs alone occupy a share of the SMs, `split_below` x SMs; then the loss stays at every context.
    pairs = np.maximum(seqs, 1.0) * kv_heads
    starve = (par_half / pairs) ** par_exp
    split = (split_context * seqs * np.where(heads == kv_heads, mha_split, 1.0)
             * (1.0 + (pairs / (split_below * hw.sms)) ** SPLIT_CUTOFF_EXP))
    # Per sequence: a work unit per KV head, and writing each query head's output.
    # Grouped-query decode with several sequences and KV heads: libraries that fold the group into the query
    # axis move q and the output between layouts in a kernel of their own (a launch: `relayout` seconds).
    # The first `free_wave` x SMs work units run as one concurrent wave and cost no more than one (the floor);
    # beyond it they cost `seq_cost` each: units^4 / (units^3 + free^3). A share `overlap` of that per-sequence
    # work hides behind other blocks' KV streaming: it joins the KV tile in decode_kv's smooth maximum, as KV
    # tokens' worth of time, instead of adding to it. All of it depends on seqs alone (constant over a span).
    folded = np.where((heads > kv_heads) & (kv_heads > 1) & (seqs > 1), relayout, 0.0)
    units = seqs * (kv_heads**kv_head_exp + head_weight * heads)
    free = free_wave * hw.sms
    per_seq = seq_cost * units**4 / (units**3 + free**3) * (1.0 + dequant_fixed * (2.0 - kv_bytes))
    fixed = folded + floor * (1.0 + dequant_fixed * (2.0 - kv_bytes)) + (1.0 - overlap) * per_seq
    per_token = smooth_max(per_token_compute, per_token_memory, sharpness)
    return fixed, per_token, starve, split, kv_tile * seqs + overlap * per_seq / per_token


def decode_kv(kv_tokens, starve, split, tile, blocks=None):
    """Effective KV tokens of a decode call; `tile` = KV tile x sequences. Each sequence reads whole KV tiles,
    so short contexts cost a tile: K' = (K^4 + T^4) / (K^3 + T^3), which is T at K = 0 and at K = T and tends
    to K beyond. Starvation then adds starve * K' * S / (S + K'). Only +, *, / on K: a span of decode steps
    evaluates bit for bit as each step alone would.

    `blocks` (see decode_multi_block), for a kernel whose split count is a rule of its library (TensorRT-LLM's
    XQA, dispatch.xqa_blocks): the rule's n sub-sequences per (sequence, KV head) replace the smooth split, so
    starvation adds starve * K' / n, and each sub-sequence past the first costs a merge. The rule reads the
    longest KV length of the call; the clock, which knows only the total, takes the mean K / sequences (exact
    for the equal-length measurements it is fitted on). Its integer steps are floor and sqrt, which numpy and
    plain floats round alike, so spans stay bit-exact."""
    k2 = kv_tokens * kv_tokens
    t2 = tile * tile
    k = (k2 * k2 + t2 * t2) / (k2 * kv_tokens + t2 * tile)
    if blocks is None:
        return k + starve * k * split / (split + k)
    seqs, kv_heads, sms, merge = blocks
    n = dispatch.xqa_blocks(kv_tokens / seqs, seqs, kv_heads, sms)
    return k + starve * k / n + merge * (n - 1.0)


def decode_multi_block(c, hw: Hardware, seqs, kv_heads, per_token):
    """decode_kv's `blocks` for a multi-block kernel: (sequences, KV heads, SMs, merge), where merge is the
    `merge_cost` seconds of each extra sub-sequence of every (sequence, KV head), as KV tokens' worth of time."""
    return seqs, kv_heads, float(hw.sms), c[20] * np.maximum(seqs, 1.0) * kv_heads / per_token


def decode_attention_time(c, hw: Hardware, seqs, kv_tokens, heads, kv_heads, head_dim, kv_bytes=2.0, kv_alias=0.0,
                          alias_by_tile=1.0, multi_block=False, rope_pass=0.0):
    """fixed + per_token * decode_kv(K).

    `kv_alias` 1: a benchmark whose V pages are its K pages. A kernel that reads each V tile right after its K
    tile (`alias_by_tile` 1: flash decoding, XQA) finds `alias_hit` of the V bytes in L2; one that reads all its
    K before its V (0: TensorRT-LLM's masked MHA) finds them there only while the K chunks in flight, about
    context x head_dim x bytes per SM (`alias_reach` x L2 in all), fit in L2. `multi_block`: the kernel splits
    by its library's rule (decode_kv)."""
    alias_hit, alias_reach = c[16], c[17]
    if np.any(kv_alias) and hw.l2_bytes:
        in_flight = kv_tokens / np.maximum(seqs, 1.0) * head_dim * kv_bytes * hw.sms / (alias_reach * hw.l2_bytes)
        kv_alias = kv_alias * alias_hit * (alias_by_tile + (1.0 - alias_by_tile) / (1.0 + in_flight**4))
    else:
        kv_alias = kv_alias * alias_hit
    fixed, per_token, starve, split, tile = decode_attention_coeffs(c, hw, seqs, heads, kv_heads, head_dim, kv_bytes,
                                                                    kv_alias)
    blocks = decode_multi_block(c, hw, seqs, kv_heads, per_token) if multi_block else None
    return fixed + per_token * decode_kv(kv_tokens, starve, split, tile, blocks) + rope_pass * c[21]


# --- all-reduce over a tensor-parallel group ---------------------------------------------------------------

ALLREDUCE = Family(
    "allreduce",
    ("floor", "hop_latency", "one_shot_eff", "two_shot_eff", "two_shot_latency", "sharpness", "block_eff",
     "nccl_latency", "nccl_hop", "nccl_eff", "nccl_ll_latency", "nccl_ll_eff", "nccl_sharpness", "nccl_mem_eff"),
    (4e-6, 1e-6, 0.3, 0.7, 1e-5, 2.0, 1.0, 1e-5, 2e-6, 0.7, 5e-6, 0.3, 4.0, 1.0),
    (1e-7, 1e-12, 0.01, 0.02, 1e-8, 1.0, 0.01, 1e-7, 1e-9, 0.02, 1e-7, 0.01, 0.3, 0.01),
    (1e-4, 1e-4, 1.5, 1.5, 1e-3, 12.0, 1e3, 1e-3, 1e-4, 1.5, 1e-3, 1.5, 12.0, 1e3),
)
# Which algorithm runs a message (dispatch.allreduce_path: a rule of the engine's source)
AR_BEST, AR_ONE_SHOT, AR_TWO_SHOT, AR_NCCL = (dispatch.AR_BEST, dispatch.AR_ONE_SHOT, dispatch.AR_TWO_SHOT,
                                               dispatch.AR_NCCL)
# Coefficients only NCCL's rows and the one-shot rows of a known token count identify (a user's allreduce.csv
# has neither: calibrate keeps the shipped values for them)
ALLREDUCE_RULE_PARAMS = ("block_eff", "nccl_latency", "nccl_hop", "nccl_eff", "nccl_ll_latency", "nccl_ll_eff",
                         "nccl_sharpness", "nccl_mem_eff")


def allreduce_time(c, hw: Hardware, message_bytes, gpus, path=AR_BEST, tokens=0.0):
    """Seconds for one all-reduce of `message_bytes` over `gpus` GPUs by the algorithm `path` picks.

    Custom kernels: one-shot (every GPU reads all peers' buffers, (g-1) x bytes, no extra phase) and two-shot
    (reduce-scatter + all-gather, 2(g-1)/g x bytes, one more synchronised phase). AR_BEST: the faster of the two,
    blended by a smooth minimum, as kernels that choose by size do. A one-shot of a known token count (`tokens`
    > 0: TensorRT-LLM's kernels run a thread block per token) also waits for one block to move its token's
    bytes from every peer, at `block_eff` x one SM's share of the link.
    AR_NCCL: the engine hands the message to NCCL (the same library on the same GPU for every engine, fitted with
    NCCL's own table): the smooth minimum of its low-latency protocol (LL: little latency, a fraction of the
    bandwidth) and its bulk protocol (Simple: more latency, the ring's 2(g-1)/g x bytes over the link, and the
    reduction's passes over local memory)."""
    (floor, hop_latency, one_shot_eff, two_shot_eff, two_shot_latency, sharpness, block_eff, nccl_latency, nccl_hop,
     nccl_eff, nccl_ll_latency, nccl_ll_eff, nccl_sharpness, nccl_mem_eff) = c
    message_bytes = np.maximum(message_bytes, 1.0)
    ring = 2.0 * (gpus - 1.0) / gpus * message_bytes / hw.link_bandwidth
    one = (gpus - 1.0) * message_bytes / (hw.link_bandwidth * one_shot_eff)
    block = np.where(tokens > 0, (gpus - 1.0) * message_bytes / np.maximum(tokens, 1.0) * hw.sms
                     / (hw.link_bandwidth * block_eff), 0.0)
    two = two_shot_latency + ring / two_shot_eff
    best = (one**-sharpness + two**-sharpness) ** (-1.0 / sharpness)
    custom = floor + hop_latency * (gpus - 1.0) + np.where(path == AR_ONE_SHOT, one + block,
                                                            np.where(path == AR_TWO_SHOT, two, best))
    low_latency = nccl_ll_latency + nccl_hop * (gpus - 1.0) + ring / nccl_ll_eff
    simple = (nccl_latency + nccl_hop * (gpus - 1.0) + ring / nccl_eff
              + message_bytes / (hw.mem_bandwidth * nccl_mem_eff))
    nccl = (low_latency**-nccl_sharpness + simple**-nccl_sharpness) ** (-1.0 / nccl_sharpness)
    return np.where(path == AR_NCCL, nccl, custom)


# --- memory-bound elementwise kernels: norms, residual adds, activation, rotary embedding, sampling ------

ELEMENTWISE = Family(
    "elementwise",
    ("floor", "memory_eff", "l2_gain", "l2_sharpness", "wave_latency", "row_eff"),
    (3e-6, 0.7, 0.3, 3.0, 1e-9, 1e3),  # the wave term starts (and, without token counts, stays) negligible
    (1e-8, 0.02, 1e-4, 1.0, 1e-9, 1e-3),
    (2e-4, 1.2, 0.95, 20.0, 1e-4, 1e3),
)
BLOCKS_PER_SM = 2.0  # a thread block of up to 1024 threads per token (row); an SM holds 2048 threads


def elementwise_time(c, hw: Hardware, traffic_bytes, rows=0.0):
    """floor + bytes over bandwidth, less what L2 serves, plus a tail per wave of rows.

    L2: a call reads what the kernel before it has just written, in the order it was written. Replacement
    evicts the oldest lines first, so once the traffic passes the L2 size the hits fall away quickly:
    cached = B / (1 + (B / L2)^l2_sharpness), of which `l2_gain` is saved.
    Waves: norms, activation and rotary run a thread block per token, BLOCKS_PER_SM per SM at a time. Each
    wave ends with its rows' dependent loads not hidden behind streaming: `wave_latency` plus a row's bytes
    at one SM's share of the bandwidth (`row_eff` of it). rows = 0 (measurements without a token count): no
    wave term."""
    floor, memory_eff, l2_gain, l2_sharpness, wave_latency, row_eff = c
    cached = traffic_bytes / (1.0 + (traffic_bytes / hw.l2_bytes) ** l2_sharpness) if hw.l2_bytes else 0.0
    stream = (traffic_bytes - l2_gain * cached) / (hw.mem_bandwidth * memory_eff)
    waves = np.ceil(rows / (BLOCKS_PER_SM * hw.sms))
    row_bytes = traffic_bytes / np.maximum(rows, 1.0)
    return floor + stream + waves * (wave_latency + row_bytes * hw.sms / (hw.mem_bandwidth * row_eff))


FAMILIES = {f.name: f for f in (GEMM, PREFILL_ATTN, DECODE_ATTN, ALLREDUCE, ELEMENTWISE)}
