"""Time GEMMs, attention and elementwise kernels with torch and write them in servesim's kernel CSV schema.

Run it on the GPU you want servesim to know (one GPU, a few minutes), then fit and check:

    python scripts/profile_kernels.py -o kernels-h100/                 # needs torch with CUDA
    servesim calibrate --kernels kernels-h100/ --gpu h100 -o mine.json # fit; also prints the shipped model's error
    servesim simulate ... --gpu h100 --kernels mine.json

What it measures, and how (also written to meta.json next to the CSVs):
- gemm.csv: `F.linear` (bf16) and `torch._scaled_mm` with per-tensor scales (fp8 e4m3, where the GPU has FP8) for
  the projection shapes of Llama-3.1-8B (TP 1, 2) and Llama-3.1-70B (TP 4, 8), over token counts 1-16384;
- context_attention.csv: `F.scaled_dot_product_attention`, causal, GQA, bf16 (torch picks flash attention on
  Hopper/Ampere), `batch` sequences of `isl` new tokens over `past` cached ones (0: a whole prompt; otherwise a
  chunked prefill, its queries aligned to the end of the keys by torch's lower-right CausalBias);
- generation_attention.csv: the same SDPA with one query token per sequence over `context` contiguous cached
  tokens. This is not vLLM's paged kernel: it reads the same bytes, but fits of it describe torch's kernel;
- elementwise.csv: RMSNorm (`F.rms_norm`), residual add and SiLU-and-mul over hidden/intermediate sizes, with the
  bytes each reads and writes;
- cast.csv (only with `--only cast`, where the GPU has FP8): a bf16 GEMM input cast to e4m3, the static
  quantization `profile_step.py --dtype fp8` runs before each FP8 GEMM (not a family servesim fits).
Each point is the median over `--trials` of (`--reps` back-to-back launches replayed as one CUDA graph, timed by
CUDA events) / reps, after warm-up; the launches cycle through enough freshly allocated input sets (256 MiB) that
operands come from HBM, not L2, as in a serving step where the other layers run in between (`--eager`,
`--rotate-mib 0` time eager launches on warm caches instead). meta.json also records what the GPU reaches on an
8192^3 bf16 product and a 2 GiB copy, next to its spec sheet. All-reduce needs several GPUs and is not measured.
`--device cpu --quick` runs a tiny grid on the CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right
except ImportError:
    sys.exit("profile_kernels.py needs torch (pip install torch); it is not a servesim dependency")

# (n, k) of QKV, O, gate_up and down projections per GPU: Llama-3.1-8B at TP 1 and 2, Llama-3.1-70B at TP 4 and 8.
GEMM_SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336),
               (3072, 4096), (4096, 2048), (14336, 4096), (4096, 7168),
               (2560, 8192), (8192, 2048), (14336, 8192), (8192, 7168),
               (1280, 8192), (8192, 1024), (7168, 8192), (8192, 3584)]
GEMM_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
HEADS = [(32, 8), (16, 4), (8, 1)]  # query and KV heads per GPU: 8B TP1, 8B TP2, 70B TP8
HEAD_DIM = 128
PREFILL = [(1, n) for n in (128, 256, 512, 1024, 2048, 4096, 8192, 16384)] + [(b, n) for b in (4, 16) for n in (128, 512, 2048)]
PREFILL_PAST = [(1, n, p) for n in (128, 512, 2048) for p in (2048, 8192)] + [(4, 512, 4096), (1, 1024, 16384)]
DECODE_BATCH = [1, 4, 16, 64, 128, 256]
DECODE_CONTEXT = [128, 512, 2048, 8192, 32768]
DECODE_BYTES_CAP = 16 << 30  # skip decode points whose KV would exceed this
MAX_COPIES = 256  # input sets rotated through to keep operands out of L2
ELEMENTWISE_TOKENS = [1, 16, 128, 1024, 4096, 16384]
CAST_TOKENS = [1, 8, 32, 128, 256, 512, 1024, 2048, 8192]  # the row counts of profile_step.py's steps
HIDDEN, INTERMEDIATE = 4096, 14336

QUICK = {"GEMM_SHAPES": GEMM_SHAPES[:2], "GEMM_M": [1, 16, 128], "HEADS": HEADS[:1], "PREFILL": [(1, 128), (2, 256)],
         "PREFILL_PAST": [(1, 64, 128)],
         "DECODE_BATCH": [1, 8], "DECODE_CONTEXT": [128, 512], "ELEMENTWISE_TOKENS": [1, 128],
         "CAST_TOKENS": [1, 128]}


class Timer:
    """Median latency of one launch, in microseconds, over `trials` timed batches of back-to-back launches.

    On CUDA the batch is captured once as a CUDA graph and replayed (as vLLM replays decode steps), so tiny kernels
    are not timed as Python launch overhead; a kernel that cannot be captured is timed eagerly. Each launch in a
    batch takes the next of `copies` input sets, enough of them to touch `rotate_bytes` between two uses of a set,
    so weights and KV come from HBM as in a serving step (where 31 other layers run in between), not from L2.
    """

    def __init__(self, device: str, reps: int, trials: int, graphs: bool, rotate_bytes: int):
        self.device, self.reps, self.trials = device, reps, trials
        self.graphs, self.rotate_bytes = graphs and device == "cuda", rotate_bytes

    def __call__(self, fn, make, nbytes: int) -> tuple[float, str]:
        """(latency in us, "graph" or "eager") of fn(*inputs); make() builds one input set of `nbytes` bytes."""
        copies = min(MAX_COPIES, max(1, -(-self.rotate_bytes // max(nbytes, 1))))
        sets = [make() for _ in range(copies)]
        reps = max(self.reps, copies)
        batch, how = None, "eager"
        if self.graphs:
            try:
                batch, how = self._capture(fn, sets, reps), "graph"
            except Exception as exc:  # noqa: BLE001 - any capture failure: fall back to eager launches
                print(f"graph capture failed ({type(exc).__name__}: {exc}); timing eagerly", file=sys.stderr)
                torch.cuda.synchronize()
        if batch is None:
            def batch():
                for i in range(reps):
                    fn(*sets[i % copies])
            for i in range(3):
                fn(*sets[i % copies])
        batch()
        self._sync()
        samples = []
        for _ in range(self.trials):
            if self.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                batch()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) * 1e3 / reps)
            else:
                t0 = time.perf_counter()
                batch()
                samples.append((time.perf_counter() - t0) * 1e6 / reps)
        return statistics.median(samples), how

    @staticmethod
    def _capture(fn, sets, reps):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture, as torch.cuda.graph asks
            for i in range(3):
                fn(*sets[i % len(sets)])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(reps):
                fn(*sets[i % len(sets)])
        return graph.replay

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()


def has_fp8(device: str) -> bool:
    return device == "cuda" and torch.cuda.get_device_capability() >= (8, 9) and hasattr(torch, "_scaled_mm")


def randn(*shape, device):
    return torch.randn(*shape, device=device, dtype=torch.bfloat16)


def gemm_rows(g, timer, device):
    rows = []
    fp8 = has_fp8(device)
    one = torch.ones((), device=device, dtype=torch.float32)
    for n, k in g["GEMM_SHAPES"]:
        for m in g["GEMM_M"]:
            us, how = timer(F.linear, lambda: (randn(m, k, device=device), randn(n, k, device=device)),
                            2 * (m * k + n * k + m * n))
            rows.append({"m": m, "n": n, "k": k, "dtype": "bf16", "latency_us": us, "timing": how})
            if fp8:  # k and n are multiples of 16, as _scaled_mm needs; m may be anything (1 row runs too)
                def make():  # the weight column-major (k, n), as _scaled_mm wants
                    return (randn(m, k, device=device).to(torch.float8_e4m3fn),
                            randn(n, k, device=device).to(torch.float8_e4m3fn).t())

                us, how = timer(lambda x, w: torch._scaled_mm(x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                                make, m * k + n * k + 2 * m * n)
                rows.append({"m": m, "n": n, "k": k, "dtype": "fp8", "latency_us": us, "timing": how})
    return rows


def attention_rows(g, timer, device):
    context, generation = [], []
    for heads, kv_heads in g["HEADS"]:
        for batch, isl in g["PREFILL"]:
            def make():
                return (randn(batch, heads, isl, HEAD_DIM, device=device),
                        randn(batch, kv_heads, isl, HEAD_DIM, device=device),
                        randn(batch, kv_heads, isl, HEAD_DIM, device=device))

            us, how = timer(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                            make, 2 * batch * isl * HEAD_DIM * (2 * heads + 2 * kv_heads))
            context.append({"batch": batch, "isl": isl, "num_heads": heads, "num_kv_heads": kv_heads,
                            "head_dim": HEAD_DIM, "kv_dtype": "bf16", "latency_us": us, "past": 0, "timing": how})
        for batch, isl, past in g["PREFILL_PAST"]:
            def make():
                return (randn(batch, heads, isl, HEAD_DIM, device=device),
                        randn(batch, kv_heads, past + isl, HEAD_DIM, device=device),
                        randn(batch, kv_heads, past + isl, HEAD_DIM, device=device))

            mask = causal_lower_right(isl, past + isl)
            us, how = timer(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True),
                            make, 2 * batch * HEAD_DIM * (2 * heads * isl + 2 * kv_heads * (past + isl)))
            context.append({"batch": batch, "isl": isl, "num_heads": heads, "num_kv_heads": kv_heads,
                            "head_dim": HEAD_DIM, "kv_dtype": "bf16", "latency_us": us, "past": past, "timing": how})
        for batch in g["DECODE_BATCH"]:
            for ctx in g["DECODE_CONTEXT"]:
                kv_bytes = 2 * batch * (ctx + 1) * kv_heads * HEAD_DIM * 2
                if kv_bytes > DECODE_BYTES_CAP:
                    continue

                def make():
                    return (randn(batch, heads, 1, HEAD_DIM, device=device),
                            randn(batch, kv_heads, ctx + 1, HEAD_DIM, device=device),
                            randn(batch, kv_heads, ctx + 1, HEAD_DIM, device=device))

                us, how = timer(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), make,
                                kv_bytes + 4 * batch * heads * HEAD_DIM)
                generation.append({"batch": batch, "context": ctx, "num_heads": heads, "num_kv_heads": kv_heads,
                                   "head_dim": HEAD_DIM, "kv_dtype": "bf16", "latency_us": us, "timing": how})
    return context, generation


def elementwise_rows(g, timer, device):
    rows = []
    weight = torch.ones(HIDDEN, device=device, dtype=torch.bfloat16)
    for tokens in g["ELEMENTWISE_TOKENS"]:
        size = 2 * tokens * HIDDEN  # bytes of one (tokens, hidden) bf16 tensor
        us, how = timer(lambda x: F.rms_norm(x, (HIDDEN,), weight), lambda: (randn(tokens, HIDDEN, device=device),),
                        2 * size)
        rows.append({"op": "norm", "bytes": 2 * size, "latency_us": us, "timing": how})
        us, how = timer(torch.add, lambda: (randn(tokens, HIDDEN, device=device), randn(tokens, HIDDEN, device=device)),
                        3 * size)
        rows.append({"op": "add", "bytes": 3 * size, "latency_us": us, "timing": how})
        act_bytes = 3 * 2 * tokens * INTERMEDIATE
        us, how = timer(lambda gu: F.silu(gu[:, :INTERMEDIATE]) * gu[:, INTERMEDIATE:],
                        lambda: (randn(tokens, 2 * INTERMEDIATE, device=device),), act_bytes)
        rows.append({"op": "act", "bytes": act_bytes, "latency_us": us, "timing": how})
    return rows


def cast_rows(g, timer, device):
    """The static FP8 quantization of a GEMM input: a bf16 (tokens, width) tensor cast to e4m3 (scale 1), one kernel
    that vLLM fuses into the norm or activation before the GEMM and profile_step.py --dtype fp8 runs on its own.
    Not in servesim's kernel schema: calibrate ignores cast.csv."""
    rows = []
    for tokens in g["CAST_TOKENS"]:
        for width in (HIDDEN, INTERMEDIATE):
            us, how = timer(lambda x: x.to(torch.float8_e4m3fn), lambda: (randn(tokens, width, device=device),),
                            3 * tokens * width)
            rows.append({"op": "cast_e4m3", "tokens": tokens, "width": width, "bytes": 3 * tokens * width,
                         "latency_us": us, "timing": how})
    return rows


def peaks(device: str) -> dict:
    """What this GPU reaches on a large bf16 matrix product and a device-to-device copy (next to the spec sheet)."""
    if device != "cuda":
        return {}
    props = torch.cuda.get_device_properties(0)
    timer = Timer(device, 10, 5, False, 0)
    n = 8192
    us, _ = timer(torch.mm, lambda: (randn(n, n, device=device), randn(n, n, device=device)), 0)
    src = torch.empty(2 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_us, _ = timer(lambda: dst.copy_(src), lambda: (), 0)
    return {"sms": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None),
            "memory_bytes": props.total_memory, "bf16_mm_8192_tflops": round(2 * n ** 3 / us / 1e6, 1),
            "copy_2GiB_read_plus_write_tb_s": round(2 * src.numel() / copy_us / 1e6, 3)}


def chunk_attention_backends(device: str) -> list[str]:
    """The SDPA backends that run a GQA chunk over a cached past with the lower-right CausalBias (torch takes the
    first of flash, memory-efficient, math that can)."""
    q = randn(1, 8, 64, HEAD_DIM, device=device)
    k, v = randn(1, 2, 192, HEAD_DIM, device=device), randn(1, 2, 192, HEAD_DIM, device=device)
    usable = []
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(64, 192), enable_gqa=True)
            usable.append(backend.name)
        except RuntimeError:
            pass
    return usable


def write(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True, help="directory for the CSVs and meta.json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true", help="a tiny grid (checks the script, not the GPU)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--eager", action="store_true", help="time launches eagerly, not as replayed CUDA graphs")
    ap.add_argument("--rotate-mib", type=int, default=None,
                    help="bytes of input sets cycled through between two uses of one (default 256 on CUDA, 0 on "
                         "the CPU; 0 times warm caches)")
    ap.add_argument("--only", choices=("gemm", "attention", "elementwise", "cast"), action="append",
                    help="time only these families (repeatable; default all)")
    ap.add_argument("--gemm-m", type=lambda text: [int(m) for m in text.split(",")],
                    help="token counts (rows m) of the GEMM grid, comma-separated (default 1-16384 in powers of 2)")
    ap.add_argument("--gemm-shapes", type=int, help="time only the first N (n, k) GEMM shapes (Llama-3.1-8B TP 1: 4)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch; use --device cpu --quick to check the script")
    grid = {k: v for k, v in globals().items() if k in QUICK} | (QUICK if args.quick else {})
    if args.gemm_m:
        grid["GEMM_M"] = args.gemm_m
    if args.gemm_shapes:
        grid["GEMM_SHAPES"] = grid["GEMM_SHAPES"][:args.gemm_shapes]
    families = set(args.only or ("gemm", "attention", "elementwise"))
    rotate_mib = args.rotate_mib if args.rotate_mib is not None else (256 if args.device == "cuda" else 0)
    timer = Timer(args.device, 2 if args.quick else args.reps, 2 if args.quick else args.trials, not args.eager,
                  rotate_mib << 20)
    torch.manual_seed(0)
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with torch.inference_mode():
        if "gemm" in families:
            write(args.output / "gemm.csv", gemm_rows(grid, timer, args.device))
            print(f"gemm done at {time.time() - started:.0f} s", flush=True)
        if "attention" in families:
            context, generation = attention_rows(grid, timer, args.device)
            write(args.output / "context_attention.csv", context)
            write(args.output / "generation_attention.csv", generation)
            print(f"attention done at {time.time() - started:.0f} s", flush=True)
        if "elementwise" in families:
            write(args.output / "elementwise.csv", elementwise_rows(grid, timer, args.device))
        if "cast" in families and (has_fp8(args.device) or args.device == "cpu"):
            write(args.output / "cast.csv", cast_rows(grid, timer, args.device))
        measured_peaks = peaks(args.device)
        chunk_backends = chunk_attention_backends(args.device)
    meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "date": datetime.now(timezone.utc).isoformat(),
            "reps": timer.reps, "trials": timer.trials, "graphs": timer.graphs, "rotate_mib": rotate_mib,
            "quick": args.quick, "families": sorted(families), "gemm_m": grid["GEMM_M"], "peaks": measured_peaks, "chunk_attention_backends": chunk_backends, "seconds": round(time.time() - started, 1),
            "method": __doc__.split("What it measures, and how (also written to meta.json next to the CSVs):\n")[1]}
    (args.output / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.output} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
