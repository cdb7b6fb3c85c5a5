"""Kernel measurements as feature arrays, read from servesim's CSV schema or NVIDIA aiconfigurator's parquet tables.

servesim's schema (`servesim calibrate --kernels DIR`): one CSV per family in DIR, any subset, latencies in
microseconds, one measurement per row:

    gemm.csv                  m,n,k,dtype,latency_us             dtype: bf16 | fp8 (weights and activations)
    context_attention.csv     batch,isl,num_heads,num_kv_heads,head_dim,kv_dtype,latency_us[,past]
                              causal prefill of `batch` sequences of `isl` new tokens each over `past` cached
                              tokens (default 0); heads are per GPU
    generation_attention.csv  batch,context,num_heads,num_kv_heads,head_dim,kv_dtype,latency_us
                              one new token per sequence attending to `context` cached tokens plus itself
    allreduce.csv             num_gpus,message_bytes,latency_us
    elementwise.csv           op,bytes,latency_us[,rows]         bytes read + written by a memory-bound kernel;
                              op: norm | add | act | rope; rows: tokens of the call (default 0: no
                              per-wave term is fitted)

The aiconfigurator layout (DIR/{gemm,attention,comm}/<engine>/<version>/*.parquet, latencies in ms, all-reduce
message sizes in bf16 elements) is read directly too, one engine at a time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from servesim.errors import ServesimError
from servesim.perf.kernels import dispatch, forms

KV_BYTES = {"bf16": 2.0, "bfloat16": 2.0, "fp16": 2.0, "float16": 2.0, "fp8": 1.0}
GEMM_DTYPES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "bf16", "float16": "bf16", "fp8": "fp8"}
SCHEMA = {
    "gemm": ("m", "n", "k", "dtype", "latency_us"),
    "context_attention": ("batch", "isl", "num_heads", "num_kv_heads", "head_dim", "kv_dtype", "latency_us"),
    "generation_attention": ("batch", "context", "num_heads", "num_kv_heads", "head_dim", "kv_dtype", "latency_us"),
    "allreduce": ("num_gpus", "message_bytes", "latency_us"),
    "elementwise": ("op", "bytes", "latency_us"),
}
ENGINES = ("vllm", "sglang", "trtllm")
ELEMENTWISE_OPS = ("norm", "add", "act", "rope")
# Which aiconfigurator kernel stands for each engine where a table holds several (the CUDA-graph variant of
# the custom all-reduce: engines run decode under CUDA graphs).
ALLREDUCE_KERNELS = {"vllm": "vLLM_custom_graph", "sglang": "SGLang_CustomAllReduce_graph", "trtllm": "TRTLLM"}


@dataclass
class Samples:
    """Measurements of one kernel family (and one GEMM dtype): feature columns and latency in seconds."""

    family: str
    columns: dict[str, np.ndarray]
    latency: np.ndarray
    source: str = ""
    variant: str = ""  # GEMM dtype
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family}.{self.variant}" if self.variant else self.family

    def __len__(self) -> int:
        return len(self.latency)

    def subset(self, mask: np.ndarray) -> "Samples":
        return Samples(self.family, {k: v[mask] for k, v in self.columns.items()}, self.latency[mask], self.source,
                       self.variant, self.meta)


def gemm_samples(m, n, k, dtype: str, latency_s, source="") -> Samples:
    cols = {"m": np.asarray(m, float), "n": np.asarray(n, float), "k": np.asarray(k, float)}
    cols["weight_bytes"] = np.full(len(cols["m"]), 1.0 if dtype == "fp8" else 2.0)
    return Samples("gemm", cols, np.asarray(latency_s, float), source, dtype)


def context_samples(batch, isl, heads, kv_heads, head_dim, kv_bytes, latency_s, past=None, source="") -> Samples:
    b, n = np.asarray(batch, float), np.asarray(isl, float)
    c = np.zeros_like(n) if past is None else np.asarray(past, float)
    cols = {"seqs": b, "tokens": b * n, "pairs": b * (n * c + n * (n + 1) / 2), "kv_tokens": b * (c + n),
            "heads": np.asarray(heads, float), "kv_heads": np.asarray(kv_heads, float),
            "head_dim": np.asarray(head_dim, float), "kv_bytes": np.asarray(kv_bytes, float),
            "isl": n}
    return Samples("context_attention", cols, np.asarray(latency_s, float), source)


def generation_samples(batch, context, heads, kv_heads, head_dim, kv_bytes, latency_s, source="", kernel="",
                       kv_alias=0.0) -> Samples:
    """`kernel`: the engine's decode kernel (a variant with its own coefficients, dispatch.trtllm_decode_kernel), or
    "" for one surface; `kv_alias` 1: the benchmark's V pages are its K pages (see read_aiconfigurator)."""
    b = np.asarray(batch, float)
    ctx = np.asarray(context, float)
    cols = {"seqs": b, "kv_tokens": b * (ctx + 1), "heads": np.asarray(heads, float),
            "kv_heads": np.asarray(kv_heads, float), "head_dim": np.asarray(head_dim, float),
            "kv_bytes": np.asarray(kv_bytes, float), "context": ctx, "kv_alias": np.full(len(b), float(kv_alias))}
    return Samples("generation_attention", cols, np.asarray(latency_s, float), source, kernel)


def allreduce_samples(gpus, message_bytes, latency_s, source="", tokens=None, path=None, reference=None) -> Samples:
    """`tokens`: rows of each message (None: unknown, 0); `path`: the algorithm each ran (forms.AR_*; None: the
    custom kernels' best); `reference` 1: a row of NCCL's own table, fitted with the engine's rows but neither
    scored nor held out as one of them (see scripts/validate_gpu.py)."""
    b = np.asarray(message_bytes, float)
    cols = {"gpus": np.asarray(gpus, float), "message_bytes": b,
            "tokens": np.zeros_like(b) if tokens is None else np.asarray(tokens, float),
            "path": np.full(len(b), forms.AR_BEST) if path is None else np.asarray(path, float),
            "reference": np.zeros_like(b) if reference is None else np.asarray(reference, float)}
    return Samples("allreduce", cols, np.asarray(latency_s, float), source)


def elementwise_samples(traffic_bytes, latency_s, source="", op="", rows=None) -> Samples:
    """`op` (norm, add, act, rope) gets its own coefficients: frameworks implement them unequally well.
    `rows`: the tokens of each call (None: unknown, 0)."""
    b = np.asarray(traffic_bytes, float)
    cols = {"bytes": b, "rows": np.zeros_like(b) if rows is None else np.asarray(rows, float)}
    return Samples("elementwise", cols, np.asarray(latency_s, float), source, op)


# --- servesim CSV schema -------------------------------------------------------------------------------------

def read_csv_dir(directory: str | Path) -> list[Samples]:
    directory = Path(directory)
    if not directory.is_dir():
        raise ServesimError(f"kernel measurements directory {str(directory)!r} does not exist")
    out: list[Samples] = []
    for family in SCHEMA:
        path = directory / f"{family}.csv"
        if path.exists():
            out.extend(_read_family_csv(family, path))
    if not out:
        raise ServesimError(f"{directory}: no kernel measurements found; expected one or more of "
                            + ", ".join(f"{f}.csv" for f in SCHEMA) + " (see `servesim calibrate --help`)")
    return out


def _read_family_csv(family: str, path: Path) -> list[Samples]:
    required = SCHEMA[family]
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ServesimError(f"{path}:1: missing column {missing[0]!r}; {family}.csv needs {', '.join(required)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            rows.append(_parse_row(family, row, path, line))
    if not rows:
        raise ServesimError(f"{path}: no measurements")
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    lat = np.asarray(cols.pop("latency_us"), float) * 1e-6
    src = str(path)
    if family == "gemm":
        return [gemm_samples(np.asarray(cols["m"])[sel], np.asarray(cols["n"])[sel], np.asarray(cols["k"])[sel],
                             dtype, lat[sel], src)
                for dtype in ("bf16", "fp8") if (sel := np.asarray(cols["dtype"]) == dtype).any()]
    if family == "context_attention":
        return [context_samples(cols["batch"], cols["isl"], cols["num_heads"], cols["num_kv_heads"], cols["head_dim"],
                                cols["kv_dtype"], lat, cols["past"], src)]
    if family == "generation_attention":
        return [generation_samples(cols["batch"], cols["context"], cols["num_heads"], cols["num_kv_heads"],
                                   cols["head_dim"], cols["kv_dtype"], lat, src)]
    if family == "allreduce":
        return [allreduce_samples(cols["num_gpus"], cols["message_bytes"], lat, src)]
    ops = np.asarray(cols["op"])
    return [elementwise_samples(np.asarray(cols["bytes"])[ops == op], lat[ops == op], src, op,
                                np.asarray(cols["rows"])[ops == op]) for op in np.unique(ops)]


def _parse_row(family: str, row: dict, path: Path, line: int) -> dict:
    out = {}
    optional = {"context_attention": ("past",), "elementwise": ("rows",)}.get(family, ())
    for key in SCHEMA[family] + optional:
        raw = (row.get(key) or "").strip()
        if key in optional and not raw:
            out[key] = 0.0
        elif key == "dtype":
            if raw.lower() not in GEMM_DTYPES:
                raise ServesimError(f"{path}:{line}: dtype {raw!r}; valid choices: bf16, fp8")
            out[key] = GEMM_DTYPES[raw.lower()]
        elif key == "op":
            if raw not in ELEMENTWISE_OPS:
                raise ServesimError(f"{path}:{line}: op {raw!r}; valid choices: {', '.join(ELEMENTWISE_OPS)}")
            out[key] = raw
        elif key == "kv_dtype":
            if raw.lower() not in KV_BYTES:
                raise ServesimError(f"{path}:{line}: kv_dtype {raw!r}; valid choices: bf16, fp8")
            out[key] = KV_BYTES[raw.lower()]
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ServesimError(f"{path}:{line}: {key} {raw!r} is not a number") from None
            if not value > 0 and not (key in optional and value == 0):
                raise ServesimError(f"{path}:{line}: {key} must be positive, got {raw!r}")
            out[key] = value
    return out


# --- NVIDIA aiconfigurator parquet layout ------------------------------------------------------------------

def _newest(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    versions = [p for p in folder.iterdir() if p.is_dir()]

    def order(p: Path):
        return [int(x) if x.isdigit() else -1 for x in p.name.replace("rc", ".").replace("post", ".").split(".")]

    return max(versions, key=order) if versions else None


def _table(path: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    return {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}


# aiconfigurator's TensorRT-LLM attention collector (collector/trtllm/collect_attn.py) built its KV cache manager with
# CacheType.SELFKONLY until commit dec5f4cd2 (2026-08-03, the 1.3.0rc20 collection), which switched to SELF: "Regular
# GQA/MHA has separate K and V tensors". With SELFKONLY the pool holds one field per block, and TensorRT-LLM's
# BlockManager::setOffsets writes the same pool index for K and V (fieldIdx = kSELFKONLY ? 0 : xIdx,
# cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp), so every V read re-reads the K bytes just read. Tables of
# earlier TensorRT-LLM versions (A100's 1.0.0) carry that artefact: grouped-query decode there reaches 1.69x the
# HBM peak on K+V bytes (0.85x on K bytes alone); H100's 1.3.0rc20 table stays below 0.93x.
TRTLLM_DISTINCT_KV_FROM = (1, 3, 0, 20)
# The same collector builds every TensorRT-LLM attention with RopeParams(dim=128) (rope_gpt_neox), whatever the head
# size (collect_attn.py, unchanged since its initial commit efcae124c). A head of 64 is narrower than that rotary
# dimension, so its Hopper GMMA rows take RoPE in a separate kernel (dispatch.trtllm_rope_pass) that a model whose
# rotary dimension fits its head does not run: a property of those measurement rows, fitted and kept out of the clock.
COLLECTOR_ROTARY_DIM = 128.0


def _trtllm_kv_aliased(version: str) -> bool:
    nums = [int(x) for x in version.replace("rc", ".").split(".") if x.isdigit()]
    nums += [1 << 30] * (4 - len(nums))  # a release (no rc) sorts after its release candidates
    return tuple(nums[:4]) < TRTLLM_DISTINCT_KV_FROM


def _main_kernel(t: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of the kernel with the most measurements (a table may hold an experimental second kernel)."""
    names, counts = np.unique(t["kernel_source"], return_counts=True)
    return t["kernel_source"] == names[np.argmax(counts)]


def read_aiconfigurator(gpu_dir: str | Path, engine: str) -> list[Samples]:
    """GEMM (bf16 and per-tensor fp8), context and generation attention (dense heads, no sliding window, head
    dims 64/128/256) and all-reduce for one engine from an aiconfigurator systems/data/<gpu> folder."""
    gpu_dir = Path(gpu_dir)
    out: list[Samples] = []
    folder = _newest(gpu_dir / "gemm" / engine)
    if folder and (folder / "gemm_perf.parquet").exists():
        t = _table(folder / "gemm_perf.parquet")
        src = f"{gpu_dir.name}/gemm/{engine}/{folder.name}"
        for raw, dtype in (("bfloat16", "bf16"), ("fp8", "fp8")):
            sel = t["gemm_dtype"] == raw
            if sel.any():
                s = gemm_samples(t["m"][sel], t["n"][sel], t["k"][sel], dtype, t["latency"][sel] * 1e-3, src)
                if tiles := dispatch.gemm_tiles(engine, dtype):
                    s.meta["gemm_tiles"] = tiles
                out.append(s)
    folder = _newest(gpu_dir / "attention" / engine)
    if folder:
        src = f"{gpu_dir.name}/attention/{engine}/{folder.name}"
        for name in ("context_attention", "generation_attention"):
            path = folder / f"{name}_perf.parquet"
            if not path.exists():
                continue
            t = _table(path)
            sel = _main_kernel(t) & np.isin(t["head_dim"], (64, 128, 256)) & np.isin(t["kv_cache_dtype"], list(KV_BYTES))
            if "window_size" in t:
                sel &= t["window_size"] == 0
            kvb = np.array([KV_BYTES[str(x)] for x in t["kv_cache_dtype"][sel]])
            args = (t["batch_size"][sel], t["num_heads"][sel], t["num_key_value_heads"][sel], t["head_dim"][sel], kvb)
            if name == "context_attention":
                s = context_samples(args[0], t["isl"][sel], *args[1:], t["latency"][sel] * 1e-3,
                                    past=t["step"][sel], source=src)
                out.append(s)
                continue
            s = generation_samples(args[0], t["isl"][sel] - 1 + t["step"][sel], *args[1:], t["latency"][sel] * 1e-3,
                                   source=src, kv_alias=float(engine == "trtllm" and _trtllm_kv_aliased(folder.name)))
            if engine != "trtllm":
                out.append(s)
                continue
            c = s.columns
            hopper = gpu_dir.name.split("_")[0] in dispatch.HOPPER
            kernels = np.array([dispatch.trtllm_decode_kernel(*row, hopper) for row in
                                zip(c["heads"], c["kv_heads"], c["head_dim"], c["kv_bytes"])])
            for kernel in sorted(set(kernels)):
                part = s.subset(kernels == kernel)
                part.variant = kernel
                # masked MHA reads all of a block's K before its V; XQA reads each V tile after its K tile
                part.columns["alias_by_tile"] = np.full(len(part), float(kernel != "mmha"))
                part.columns["rope_pass"] = dispatch.trtllm_rope_pass(kernel, part.columns["head_dim"],
                                                                      COLLECTOR_ROTARY_DIM)
                part.meta = {**part.meta, "multi_block": kernel in dispatch.MULTI_BLOCK_KERNELS}  # XQA's split rule
                out.append(part)
    folder = _newest(gpu_dir / "comm" / engine)
    path = folder / "custom_allreduce_perf.parquet" if folder else None
    if path and path.exists():
        t = _table(path)
        sel = t["kernel_source"] == ALLREDUCE_KERNELS[engine]
        if sel.any():
            out.append(_allreduce_with_nccl(gpu_dir, engine, t["num_gpus"][sel], t["message_size"][sel],
                                            t["latency"][sel] * 1e-3, f"{gpu_dir.name}/comm/{engine}/{folder.name}"))
    return out


# aiconfigurator's all-reduce collector (collector/collect_all_reduce.py, get_input_shape_and_comm_size) shapes a
# message of n elements as one row of n up to token_dim = 4096 elements, as n // 4096 rows of 4096 above.
COLLECTOR_TOKEN_DIM = 4096.0


def _allreduce_with_nccl(gpu_dir: Path, engine: str, gpus, elements, latency_s, source: str) -> Samples:
    """The engine's all-reduce rows (bf16), each with the algorithm the engine's rule picks, followed by NCCL's own
    all-reduce table on the same GPU (fp16, newest NCCL) as reference rows: every engine hands large messages to
    the same NCCL, whose latency at small sizes only its own table shows."""
    gpus, elements = np.asarray(gpus, float), np.asarray(elements, float)
    tokens = np.where(elements <= COLLECTOR_TOKEN_DIM, 1.0, np.floor(elements / COLLECTOR_TOKEN_DIM))
    own = allreduce_samples(gpus, elements * 2.0, latency_s, source, tokens,
                            dispatch.allreduce_path(engine, tokens, elements * 2.0, gpus))
    folder = _newest(gpu_dir / "comm" / "nccl")
    if not folder or not (folder / "nccl_perf.parquet").exists():
        return own
    t = _table(folder / "nccl_perf.parquet")
    sel = (t["op_name"] == "all_reduce") & (t["nccl_dtype"] == "half")
    n = int(sel.sum())
    nccl = allreduce_samples(t["num_gpus"][sel], t["message_size"][sel] * 2.0, t["latency"][sel] * 1e-3, "",
                             np.zeros(n), np.full(n, forms.AR_NCCL), np.ones(n))
    return concat([own, nccl], f"{source} + {gpu_dir.name}/comm/nccl/{folder.name}")


# --- Vidur per-operator profiles (compute/<gpu>/<org>/<model>/mlp.csv, times in ms) ------------------------

VIDUR_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
VIDUR_ELEMENTWISE = {"input_layernorm": "norm", "post_attention_layernorm": "norm", "add": "add", "mlp_act": "act",
                     "attn_rope": "rope"}


def read_vidur_mlp(path: str | Path) -> tuple[list[Samples], list[Samples]]:
    """(GEMM samples, elementwise samples) of one Vidur mlp.csv: each operator's median time with the shape it
    ran at (per GPU, after tensor-parallel sharding; fp16 activations and weights)."""
    path = Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    col = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.startswith(("n_", "num_", "vocab"))}
    med = {op: np.array([float(r[f"time_stats.{op}.median"]) for r in rows]) * 1e-3
           for op in VIDUR_GEMMS + tuple(VIDUR_ELEMENTWISE)}
    m, tp = col["num_tokens"], col["num_tensor_parallel_workers"]
    h, inter = col["n_embd"], col["n_expanded_embd"] / tp
    head_dim = h / col["n_head"]
    q, kv = h / tp, col["n_kv_head"] * head_dim / tp
    src = f"vidur {path.parent.parent.parent.name}/{path.parent.parent.name}/{path.parent.name}"
    shapes = {"attn_pre_proj": (q + 2 * kv, h), "attn_post_proj": (h, q), "mlp_up_proj": (2 * inter, h),
              "mlp_down_proj": (h, inter)}
    gemms = [gemm_samples(m, n, k, "bf16", med[op], f"{src} {op}") for op, (n, k) in shapes.items()]
    # Bytes read + written (2-byte elements): norm reads and writes the hidden state, the residual add reads
    # two and writes one, SiLU-and-mul reads gate and up and writes one, rotary reads and writes q and k.
    traffic = {"input_layernorm": 4 * m * h, "post_attention_layernorm": 4 * m * h, "add": 6 * m * h,
               "mlp_act": 6 * m * inter, "attn_rope": 4 * m * (q + kv)}
    elementwise = [elementwise_samples(traffic[op], med[op], f"{src} {op}", kind, m)
                   for op, kind in VIDUR_ELEMENTWISE.items()]
    return gemms, elementwise


def concat(parts: list[Samples], source: str) -> Samples:
    first = parts[0]
    cols = {k: np.concatenate([p.columns[k] for p in parts]) for k in first.columns}
    return Samples(first.family, cols, np.concatenate([p.latency for p in parts]), source, first.variant)
