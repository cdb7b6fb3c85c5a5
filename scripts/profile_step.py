"""Time whole forward steps of a Llama-shaped model written in plain torch, to check servesim's operator breakdown.

servesim prices a step as the sum of its kernels (perf/calibrated.py). This script measures the sum's other side:
a Llama-3.1-8B-shaped decoder (random bf16 weights) runs whole steps (embedding, per layer RMSNorm, QKV, RoPE, KV
write, SDPA attention, O, residual adds, gated MLP; final norm, LM head on the last token of each sequence and a
greedy sampler), captured as one CUDA graph and replayed, as vLLM replays decode steps. The kernels are torch's
(the same ones scripts/profile_kernels.py times), so `scripts/validate_measured.py` can compare the measured steps with
servesim's prediction from a calibration fitted on those kernel timings: what is left is the composition.

    python scripts/profile_step.py -o steps-h100/          # needs torch with CUDA; ~1 minute on an H100

Writes steps.csv (kind, batch, context or prompt tokens, graph_ms = median of --trials replays, eager_ms = the same
step launched op by op from Python) and meta.json. `--device cpu --tiny` checks the script on a two-layer toy.
Decode: `batch` sequences each with `context` cached tokens, one new token each (contiguous KV per layer; SDPA
over context + 1). Prefill: `batch` sequences of `context` new tokens, no cached past, causal.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("profile_step.py needs torch (pip install torch); it is not a servesim dependency")

from profile_kernels import Timer  # noqa: E402  (same folder: one way of timing for kernels and steps)

LLAMA_8B = {"hidden": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "intermediate": 14336,
            "vocab": 128256}
TINY = {"hidden": 256, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 64, "intermediate": 512, "vocab": 1024}
DECODE = [(b, c) for b in (1, 8, 32, 128, 256) for c in (512, 2048, 8192)]
PREFILL = [(1, 128), (1, 512), (1, 2048), (1, 8192), (4, 512), (4, 2048)]
KV_CAP_BYTES = 40 << 30  # skip decode shapes whose KV cache (all layers) would exceed this


class Llama:
    """Weights and one forward step; `step(...)` is captured as a graph per shape."""

    def __init__(self, cfg: dict, device: str):
        self.cfg, self.device = cfg, device
        h, q, kv, d, i = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["intermediate"]

        def w(*shape):
            return torch.randn(*shape, device=device, dtype=torch.bfloat16) * 0.02

        self.embed = w(cfg["vocab"], h)
        self.lm_head = w(cfg["vocab"], h)
        self.norm = torch.ones(h, device=device, dtype=torch.bfloat16)
        self.layers = [{"qkv": w((q + 2 * kv) * d, h), "o": w(h, q * d), "gate_up": w(2 * i, h), "down": w(h, i)}
                       for _ in range(cfg["layers"])]

    def rope(self, x, cos_sin):
        """Rotary embedding as a complex multiply: three kernels (to float, multiply, back), where vLLM runs one."""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * cos_sin).flatten(-2).to(x.dtype)

    def step(self, tokens, k_caches, v_caches, cos_sin, decode: bool):
        """tokens: (batch, new). Decode writes the new K/V at the caches' last slot and attends over the whole
        cache; prefill attends causally over its own tokens. Returns the greedy next token per sequence."""
        c = self.cfg
        b, n = tokens.shape
        q_heads, kv_heads, d = c["heads"], c["kv_heads"], c["head_dim"]
        x = F.embedding(tokens.flatten(), self.embed)
        for layer, k_cache, v_cache in zip(self.layers, k_caches, v_caches):
            hidden = F.rms_norm(x, (c["hidden"],), self.norm)
            qkv = F.linear(hidden, layer["qkv"]).view(b, n, q_heads + 2 * kv_heads, d)
            q = self.rope(qkv[:, :, :q_heads], cos_sin).transpose(1, 2)
            k = self.rope(qkv[:, :, q_heads:q_heads + kv_heads], cos_sin).transpose(1, 2)
            v = qkv[:, :, q_heads + kv_heads:].transpose(1, 2)
            if decode:
                k_cache[:, :, -1:].copy_(k)
                v_cache[:, :, -1:].copy_(v)
                attn = F.scaled_dot_product_attention(q, k_cache, v_cache, enable_gqa=True)
            else:
                attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + F.linear(attn.transpose(1, 2).reshape(b * n, q_heads * d), layer["o"])
            hidden = F.rms_norm(x, (c["hidden"],), self.norm)
            gate_up = F.linear(hidden, layer["gate_up"])
            x = x + F.linear(F.silu(gate_up[:, :c["intermediate"]]) * gate_up[:, c["intermediate"]:], layer["down"])
        last = x.view(b, n, -1)[:, -1]
        return F.linear(F.rms_norm(last, (c["hidden"],), self.norm), self.lm_head).argmax(-1)


def time_step(model: Llama, batch: int, length: int, decode: bool, trials: int) -> tuple[float, float]:
    """(graph ms or nan, eager ms), medians over `trials`."""
    c, dev = model.cfg, model.device
    new = 1 if decode else length
    tokens = torch.randint(0, c["vocab"], (batch, new), device=dev)
    angles = torch.rand(new, c["head_dim"] // 2, device=dev) * 6.28
    cos_sin = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]  # (1, new, 1, head_dim/2)
    shape = (batch, c["kv_heads"], length + 1, c["head_dim"]) if decode else (1,)
    k_caches = [torch.randn(*shape, device=dev, dtype=torch.bfloat16) for _ in range(c["layers"])]
    v_caches = [torch.randn(*shape, device=dev, dtype=torch.bfloat16) for _ in range(c["layers"])]

    def run():
        return model.step(tokens, k_caches, v_caches, cos_sin, decode)

    eager_us, _ = Timer(dev, 1, trials, False, 0)(run, tuple, 0)
    graph_us, how = Timer(dev, 1, trials, True, 0)(run, tuple, 0) if dev == "cuda" else (float("nan"), "")
    del k_caches, v_caches
    return (graph_us if how == "graph" else float("nan")) / 1e3, eager_us / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True, help="directory for steps.csv and meta.json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="a two-layer toy model and two shapes (checks the script)")
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch; use --device cpu --tiny to check the script")
    cfg = TINY if args.tiny else LLAMA_8B
    decode_grid, prefill_grid = ([(2, 64)], [(1, 32)]) if args.tiny else (DECODE, PREFILL)
    torch.manual_seed(0)
    started = time.time()
    rows = []
    with torch.inference_mode():
        model = Llama(cfg, args.device)
        kv_bytes_per_token = 2 * cfg["layers"] * cfg["kv_heads"] * cfg["head_dim"] * 2
        for kind, grid in (("decode", decode_grid), ("prefill", prefill_grid)):
            for batch, length in grid:
                if kind == "decode" and batch * (length + 1) * kv_bytes_per_token > KV_CAP_BYTES:
                    continue
                graph_ms, eager_ms = time_step(model, batch, length, kind == "decode", args.trials)
                rows.append({"kind": kind, "batch": batch, "length": length, "graph_ms": round(graph_ms, 4),
                             "eager_ms": round(eager_ms, 4)})
                print(f"{kind} batch {batch} length {length}: graph {graph_ms:.3f} ms, eager {eager_ms:.3f} ms",
                      flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "steps.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": datetime.now(timezone.utc).isoformat(), "model": cfg,
            "trials": args.trials, "seconds": round(time.time() - started, 1),
            "length": "decode: cached tokens per sequence (attends over length + 1); prefill: new tokens per sequence",
            "method": __doc__.split("\n\n")[1]}
    (args.output / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.output} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
