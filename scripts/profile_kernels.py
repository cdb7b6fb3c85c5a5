"""Time GEMMs, attention and elementwise kernels with torch and write them in servesim's kernel CSV schema.

Run it on the GPU you want servesim to know (one GPU, a few minutes), then fit and check:

    python scripts/profile_kernels.py -o kernels-h100/                 # needs torch with CUDA
    servesim calibrate --kernels kernels-h100/ --gpu h100 -o mine.json # fit; also prints the shipped model's error
    servesim simulate ... --gpu h100 --kernels mine.json

What it measures, and how (also written to meta.json next to the CSVs):
- gemm.csv: `F.linear` (bf16) and `torch._scaled_mm` with per-tensor scales (fp8 e4m3, where the GPU has FP8) for
  the projection shapes of Llama-3.1-8B (TP 1, 2) and Llama-3.1-70B (TP 4, 8), over token counts 1-16384;
- context_attention.csv: `F.scaled_dot_product_attention`, causal, GQA, bf16 (torch picks flash attention on
  Hopper/Ampere), `batch` sequences of `isl` new tokens and no cached past;
- generation_attention.csv: the same SDPA with one query token per sequence over `context` contiguous cached
  tokens. This is not vLLM's paged kernel: it reads the same bytes, but fits of it describe torch's kernel;
- elementwise.csv: RMSNorm (`F.rms_norm`), residual add and SiLU-and-mul over hidden/intermediate sizes, with the
  bytes each reads and writes.
All-reduce needs several GPUs and is not measured here.
Each point is the median over `--trials` of (`--reps` back-to-back launches timed by CUDA events) / reps, after
warm-up; inputs are freshly allocated per shape, so caches are not cold between reps (as in a serving step, where
weights stream once per launch). `--device cpu --quick` runs a tiny grid on the CPU to check the script itself.
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
DECODE_BATCH = [1, 4, 16, 64, 128, 256]
DECODE_CONTEXT = [128, 512, 2048, 8192, 32768]
DECODE_BYTES_CAP = 16 << 30  # skip decode points whose KV would exceed this
ELEMENTWISE_TOKENS = [1, 16, 128, 1024, 4096, 16384]
HIDDEN, INTERMEDIATE = 4096, 14336

QUICK = {"GEMM_SHAPES": GEMM_SHAPES[:2], "GEMM_M": [1, 16, 128], "HEADS": HEADS[:1], "PREFILL": [(1, 128), (2, 256)],
         "DECODE_BATCH": [1, 8], "DECODE_CONTEXT": [128, 512], "ELEMENTWISE_TOKENS": [1, 128]}


class Timer:
    def __init__(self, device: str, reps: int, trials: int):
        self.device, self.reps, self.trials = device, reps, trials

    def __call__(self, fn) -> float:
        """Median latency of fn() in microseconds."""
        for _ in range(3):
            fn()
        self._sync()
        samples = []
        for _ in range(self.trials):
            if self.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(self.reps):
                    fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) * 1e3 / self.reps)
            else:
                t0 = time.perf_counter()
                for _ in range(self.reps):
                    fn()
                samples.append((time.perf_counter() - t0) * 1e6 / self.reps)
        return statistics.median(samples)

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()


def has_fp8(device: str) -> bool:
    return device == "cuda" and torch.cuda.get_device_capability() >= (8, 9) and hasattr(torch, "_scaled_mm")


def gemm_rows(g, timer, device):
    rows = []
    for n, k in g["GEMM_SHAPES"]:
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16)
        w8 = w.to(torch.float8_e4m3fn).t() if has_fp8(device) else None  # column-major (k, n), as _scaled_mm wants
        one = torch.ones((), device=device, dtype=torch.float32)
        for m in g["GEMM_M"]:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            rows.append({"m": m, "n": n, "k": k, "dtype": "bf16", "latency_us": timer(lambda: F.linear(x, w))})
            if w8 is not None and m % 16 == 0:  # _scaled_mm needs dimensions that are multiples of 16
                x8 = x.to(torch.float8_e4m3fn)
                rows.append({"m": m, "n": n, "k": k, "dtype": "fp8", "latency_us": timer(
                    lambda: torch._scaled_mm(x8, w8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))})
            del x
    return rows


def attention_rows(g, timer, device):
    context, generation = [], []
    for heads, kv_heads in g["HEADS"]:
        for batch, isl in g["PREFILL"]:
            q = torch.randn(batch, heads, isl, HEAD_DIM, device=device, dtype=torch.bfloat16)
            kv = torch.randn(batch, kv_heads, isl, HEAD_DIM, device=device, dtype=torch.bfloat16)
            us = timer(lambda: F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True))
            context.append({"batch": batch, "isl": isl, "num_heads": heads, "num_kv_heads": kv_heads,
                            "head_dim": HEAD_DIM, "kv_dtype": "bf16", "latency_us": us, "past": 0})
        for batch in g["DECODE_BATCH"]:
            for ctx in g["DECODE_CONTEXT"]:
                if 2 * batch * (ctx + 1) * kv_heads * HEAD_DIM * 2 > DECODE_BYTES_CAP:
                    continue
                q = torch.randn(batch, heads, 1, HEAD_DIM, device=device, dtype=torch.bfloat16)
                kv = torch.randn(batch, kv_heads, ctx + 1, HEAD_DIM, device=device, dtype=torch.bfloat16)
                us = timer(lambda: F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True))
                generation.append({"batch": batch, "context": ctx, "num_heads": heads, "num_kv_heads": kv_heads,
                                   "head_dim": HEAD_DIM, "kv_dtype": "bf16", "latency_us": us})
                del kv
    return context, generation


def elementwise_rows(g, timer, device):
    rows = []
    for tokens in g["ELEMENTWISE_TOKENS"]:
        x = torch.randn(tokens, HIDDEN, device=device, dtype=torch.bfloat16)
        r = torch.randn_like(x)
        weight = torch.ones(HIDDEN, device=device, dtype=torch.bfloat16)
        gate_up = torch.randn(tokens, 2 * INTERMEDIATE, device=device, dtype=torch.bfloat16)
        gate, up = gate_up.chunk(2, dim=-1)
        size = 2 * tokens * HIDDEN  # bytes of one (tokens, hidden) bf16 tensor
        rows.append({"op": "norm", "bytes": 2 * size, "latency_us": timer(lambda: F.rms_norm(x, (HIDDEN,), weight))})
        rows.append({"op": "add", "bytes": 3 * size, "latency_us": timer(lambda: torch.add(x, r))})
        rows.append({"op": "act", "bytes": 3 * 2 * tokens * INTERMEDIATE,
                     "latency_us": timer(lambda: F.silu(gate) * up)})
    return rows


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
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch; use --device cpu --quick to check the script")
    grid = {k: v for k, v in globals().items() if k in QUICK} | (QUICK if args.quick else {})
    timer = Timer(args.device, 2 if args.quick else args.reps, 2 if args.quick else args.trials)
    torch.manual_seed(0)
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with torch.inference_mode():
        write(args.output / "gemm.csv", gemm_rows(grid, timer, args.device))
        context, generation = attention_rows(grid, timer, args.device)
        write(args.output / "context_attention.csv", context)
        write(args.output / "generation_attention.csv", generation)
        write(args.output / "elementwise.csv", elementwise_rows(grid, timer, args.device))
    meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "date": datetime.now(timezone.utc).isoformat(),
            "reps": timer.reps, "trials": timer.trials, "quick": args.quick, "seconds": round(time.time() - started, 1),
            "method": __doc__.split("What it measures, and how (also written to meta.json next to the CSVs):\n")[1]}
    (args.output / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.output} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
