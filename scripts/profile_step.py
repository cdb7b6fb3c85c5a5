"""Time whole forward steps of a Llama-shaped model written in plain torch, to check servesim's operator breakdown.

servesim prices a step as the sum of its kernels (perf/calibrated.py). This script measures the sum's other side:
a Llama-shaped decoder (random bf16 weights; Llama-3.1-8B's dimensions unless --model names another) runs whole
steps (embedding, per layer RMSNorm, QKV, RoPE, KV write, SDPA attention, O, residual adds, gated MLP; final norm,
LM head on the last token of each sequence and a greedy sampler), captured as one CUDA graph and replayed, as vLLM
replays decode steps. The kernels are torch's (the same ones scripts/profile_kernels.py times), so
`scripts/validate_measured.py` can compare the measured steps with servesim's prediction from a calibration fitted
on those kernel timings: what is left is the composition.

    python scripts/profile_step.py -o steps-h100/          # needs torch with CUDA; ~1 minute on an H100
    python scripts/profile_step.py -o steps-fp8/ --dtype fp8   # the same steps with FP8 weights
    python scripts/profile_step.py -o steps-qwen3-8b/ --model qwen3-8b   # another model's dimensions

`--model NAME` reads hidden size, layers, heads, KV heads, head dim, MLP width and vocabulary from
src/servesim/models/configs/NAME.json (the configs servesim prices); a tied LM head shares the embedding's tensor.
The step stays Llama-shaped (RMSNorm, RoPE, gated SiLU MLP, no biases), as servesim's step price is: Qwen2.5's
bias on Q, K and V and Qwen3's per-head RMSNorm of q and k (two more kernels per layer in vLLM) are not run, and
neither is a sliding window; meta.json lists what was left out for the model (`not_run`).

`--dtype fp8` stores the layers' weights in float8 e4m3 and runs their four GEMMs as `torch._scaled_mm` with
per-tensor scales (as servesim's FP8 GEMM fit was timed); each GEMM's input is first cast to e4m3 with a static scale
of 1 (one cast kernel each, where vLLM fuses the static quantization into the norm or activation before it). The
embedding, LM head and KV cache stay bf16, as in vLLM's FP8 checkpoints with its default KV cache.

Writes steps.csv (kind, batch, length, chunk, past, graph_ms = median of --trials replays, eager_ms = the same
step launched op by op from Python) and meta.json. `--device cpu --tiny` checks the script on a two-layer toy;
`--device cpu --tiny --model llama-3.2-1b --layers 2` checks a model's dimensions the same way (seconds).
Decode: `batch` sequences each with `length` cached tokens, one new token each (contiguous KV per layer; SDPA
over length + 1). Prefill: `batch` sequences of `length` new tokens, no cached past, causal. Chunked: one prompt
chunk of `chunk` new tokens over `past` cached ones (SDPA with a lower-right causal mask, the chunked prefill of
vLLM's scheduler). Mixed: `batch` decodes of `length` plus such a chunk in the same step, their rows through the
GEMMs together, as vLLM batches a chunked prefill with running decodes.
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
    from torch.nn.attention.bias import causal_lower_right
except ImportError:
    sys.exit("profile_step.py needs torch (pip install torch); it is not a servesim dependency")

from profile_kernels import Timer  # noqa: E402  (same folder: one way of timing for kernels and steps)

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "servesim" / "models" / "configs"
DEFAULT_MODEL = "llama-3.1-8b"
TINY = {"hidden": 256, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 64, "intermediate": 512, "vocab": 1024}
DECODE = [(b, c) for b in (1, 8, 32, 128, 256) for c in (512, 2048, 8192)]
PREFILL = [(1, 128), (1, 512), (1, 2048), (1, 8192), (4, 512), (4, 2048)]
CHUNKED = [(c, p) for c in (512, 2048) for p in (2048, 8192)]  # (chunk, past)
# (decodes, their length, chunk, past); 32 + 224 and 32 + 992 put whole 128-row tiles through the GEMMs, next to
# 32 + 256 and 32 + 1024, which do not
MIXED = [(32, 2048, c, 4096) for c in (224, 256, 992, 1024)] + [(128, 2048, c, 4096) for c in (256, 1024)]
KV_CAP_BYTES = 40 << 30  # skip decode shapes whose KV cache (all layers) would exceed this


def model_config(name: str) -> tuple[dict, dict]:
    """The dimensions of src/servesim/models/configs/`name`.json as the step uses them, and what about the model
    the step leaves out or changes (read as servesim's models/spec.py reads a Hugging Face config)."""
    path = CONFIGS / f"{name}.json"
    if not path.is_file():
        sys.exit(f"unknown model {name!r}; valid choices: {', '.join(sorted(p.stem for p in CONFIGS.glob('*.json')))}")
    c = json.loads(path.read_text())
    heads, hidden = c["num_attention_heads"], c["hidden_size"]
    cfg = {"hidden": hidden, "layers": c["num_hidden_layers"], "heads": heads,
           "kv_heads": c.get("num_key_value_heads") or heads, "head_dim": c.get("head_dim") or hidden // heads,
           "intermediate": c["intermediate_size"], "vocab": c["vocab_size"]}
    arch = (c.get("architectures") or ["LlamaForCausalLM"])[0]
    not_run = []
    if c.get("attention_bias", arch == "Qwen2ForCausalLM"):
        not_run.append("bias on Q, K and V (vLLM adds it in the QKV GEMM)")
    if c.get("model_type") == "qwen3" or arch == "Qwen3ForCausalLM":
        not_run.append("per-head RMSNorm of q and k (two kernels per layer in vLLM)")
    if c.get("sliding_window") and c.get("use_sliding_window", True):
        not_run.append(f"sliding window of {c['sliding_window']} (attention runs over the whole context)")
    extra = {"architecture": arch, "tie_word_embeddings": bool(c.get("tie_word_embeddings", False)),
             "not_run": not_run}
    return cfg, extra


class Llama:
    """Weights and one forward step; `step(...)` is captured as a graph per shape."""

    def __init__(self, cfg: dict, device: str, dtype: str = "bf16", tied: bool = False):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        h, q, kv, d, i = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["intermediate"]

        def w(*shape):
            return torch.randn(*shape, device=device, dtype=torch.bfloat16) * 0.02

        self.embed = w(cfg["vocab"], h)
        self.lm_head = self.embed if tied else w(cfg["vocab"], h)
        self.norm = torch.ones(h, device=device, dtype=torch.bfloat16)
        self.layers = [{"qkv": w((q + 2 * kv) * d, h), "o": w(h, q * d), "gate_up": w(2 * i, h), "down": w(h, i)}
                       for _ in range(cfg["layers"])]
        if dtype == "fp8":  # (n, k) row-major, so .t() is the column-major (k, n) operand _scaled_mm wants
            self.layers = [{name: weight.to(torch.float8_e4m3fn) for name, weight in layer.items()}
                           for layer in self.layers]
            self.one = torch.ones((), device=device, dtype=torch.float32)

    def linear(self, x, weight):
        """A layer GEMM: bf16 F.linear, or FP8 `_scaled_mm` after a static (scale 1) cast of the input."""
        if self.dtype == "bf16":
            return F.linear(x, weight)
        return torch._scaled_mm(x.to(torch.float8_e4m3fn), weight.t(), scale_a=self.one, scale_b=self.one,
                                out_dtype=torch.bfloat16)

    def rope(self, x, cos_sin):
        """Rotary embedding as a complex multiply: three kernels (to float, multiply, back), where vLLM runs one."""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * cos_sin).flatten(-2).to(x.dtype)

    def step(self, groups):
        """One step over `groups` of sequences, each a dict with tokens (b, n), cos_sin, and for sequences with a
        past the per-layer K/V caches (b, kv_heads, past + n, head_dim) whose last n slots this step writes.
        All groups' rows go through the GEMMs together. Returns the greedy next token of every sequence."""
        c = self.cfg
        q_heads, kv_heads, d = c["heads"], c["kv_heads"], c["head_dim"]
        x = F.embedding(torch.cat([g["tokens"].flatten() for g in groups]) if len(groups) > 1
                        else groups[0]["tokens"].flatten(), self.embed)
        for i, layer in enumerate(self.layers):
            hidden = F.rms_norm(x, (c["hidden"],), self.norm)
            qkv = self.linear(hidden, layer["qkv"])
            outs, row = [], 0
            for g in groups:
                b, n = g["tokens"].shape
                part = qkv[row:row + b * n].view(b, n, q_heads + 2 * kv_heads, d)
                row += b * n
                q = self.rope(part[:, :, :q_heads], g["cos_sin"]).transpose(1, 2)
                k = self.rope(part[:, :, q_heads:q_heads + kv_heads], g["cos_sin"]).transpose(1, 2)
                v = part[:, :, q_heads + kv_heads:].transpose(1, 2)
                if "k" not in g:  # prefill without past: causal over its own tokens
                    attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
                else:
                    k_cache, v_cache = g["k"][i], g["v"][i]
                    k_cache[:, :, -n:].copy_(k)
                    v_cache[:, :, -n:].copy_(v)
                    mask = None if n == 1 else chunk_mask(n, k_cache.shape[2], q.device)
                    attn = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask, enable_gqa=True)
                outs.append(attn.transpose(1, 2).reshape(b * n, q_heads * d))
            x = x + self.linear(torch.cat(outs) if len(outs) > 1 else outs[0], layer["o"])
            hidden = F.rms_norm(x, (c["hidden"],), self.norm)
            gate_up = self.linear(hidden, layer["gate_up"])
            x = x + self.linear(F.silu(gate_up[:, :c["intermediate"]]) * gate_up[:, c["intermediate"]:],
                              layer["down"])
        lasts, row = [], 0
        for g in groups:
            b, n = g["tokens"].shape
            lasts.append(x[row:row + b * n].view(b, n, -1)[:, -1])
            row += b * n
        last = torch.cat(lasts) if len(lasts) > 1 else lasts[0]
        return F.linear(F.rms_norm(last, (c["hidden"],), self.norm), self.lm_head).argmax(-1)


CHUNK_MASK = {"how": "lower-right CausalBias"}


def chunk_mask_bool(new: int, total: int, device):
    return torch.ones(new, total, dtype=torch.bool, device=device).tril(total - new)


def chunk_mask(new: int, total: int, device):
    """The causal mask of `new` queries at the end of `total` keys: torch's lower-right CausalBias (flash attention
    on the GPU), or the boolean mask if the probe found CausalBias unusable there."""
    if CHUNK_MASK["how"] == "lower-right CausalBias":
        return causal_lower_right(new, total)
    return chunk_mask_bool(new, total, device)


def probe_chunk_mask(device: str) -> None:
    """Check CausalBias with GQA against the boolean mask once, and fall back to the mask if it fails or differs."""
    q = torch.randn(1, 8, 64, 128, device=device, dtype=torch.bfloat16)
    k, v = (torch.randn(1, 2, 192, 128, device=device, dtype=torch.bfloat16) for _ in range(2))
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=chunk_mask_bool(64, 192, device), enable_gqa=True)
    try:
        got = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(64, 192), enable_gqa=True)
        diff = float((got.float() - exact.float()).abs().max())
    except Exception as exc:  # noqa: BLE001 - any failure: use the mask
        CHUNK_MASK.update(how="boolean mask", why=f"{type(exc).__name__}: {exc}")
        return
    CHUNK_MASK["max_abs_diff_vs_boolean_mask"] = diff
    if diff > 0.05:
        CHUNK_MASK["how"] = "boolean mask"


def make_group(model: Llama, batch: int, new: int, past: int) -> dict:
    """`batch` sequences of `new` tokens over `past` cached ones (random tokens, angles and caches)."""
    c, dev = model.cfg, model.device
    angles = torch.rand(new, c["head_dim"] // 2, device=dev) * 6.28
    group = {"tokens": torch.randint(0, c["vocab"], (batch, new), device=dev),
             "cos_sin": torch.polar(torch.ones_like(angles), angles)[None, :, None, :]}  # (1, new, 1, head_dim/2)
    if past:
        shape = (batch, c["kv_heads"], past + new, c["head_dim"])
        group["k"] = [torch.randn(*shape, device=dev, dtype=torch.bfloat16) for _ in range(c["layers"])]
        group["v"] = [torch.randn(*shape, device=dev, dtype=torch.bfloat16) for _ in range(c["layers"])]
    return group


def time_step(model: Llama, groups: list[dict], trials: int) -> tuple[float, float]:
    """(graph ms or nan, eager ms), medians over `trials`."""
    dev = model.device

    def run():
        return model.step(groups)

    eager_us, _ = Timer(dev, 1, trials, False, 0)(run, tuple, 0)
    graph_us, how = Timer(dev, 1, trials, True, 0)(run, tuple, 0) if dev == "cuda" else (float("nan"), "")
    return (graph_us if how == "graph" else float("nan")) / 1e3, eager_us / 1e3


def grid(tiny: bool) -> list[dict]:
    """Each step as kind, batch (decodes or prefills), length (their cached or new tokens), chunk and past (one
    prompt chunk over a cached past, 0 if none)."""
    if tiny:
        decode, prefill, chunked, mixed = [(2, 64)], [(1, 32)], [(16, 48)], [(2, 64, 16, 48)]
    else:
        decode, prefill, chunked, mixed = DECODE, PREFILL, CHUNKED, MIXED
    rows = [{"kind": "decode", "batch": b, "length": n, "chunk": 0, "past": 0} for b, n in decode]
    rows += [{"kind": "prefill", "batch": b, "length": n, "chunk": 0, "past": 0} for b, n in prefill]
    rows += [{"kind": "chunked", "batch": 0, "length": 0, "chunk": c, "past": p} for c, p in chunked]
    rows += [{"kind": "mixed", "batch": b, "length": n, "chunk": c, "past": p} for b, n, c, p in mixed]
    return rows


def groups_of(model: Llama, row: dict) -> list[dict]:
    b, n = row["batch"], row["length"]
    if row["kind"] == "prefill":
        return [make_group(model, b, n, 0)]
    groups = [make_group(model, b, 1, n)] if b else []
    return groups + ([make_group(model, 1, row["chunk"], row["past"])] if row["chunk"] else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, required=True, help="directory for steps.csv and meta.json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true",
                    help="one step of each kind, on a two-layer toy model unless --model is given (checks the script)")
    ap.add_argument("--model", metavar="NAME",
                    help=f"dimensions from src/servesim/models/configs/NAME.json (default {DEFAULT_MODEL})")
    ap.add_argument("--layers", type=int, help="run this many layers instead of the model's (a cheap CPU check)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp8"), help="the layers' weights and GEMMs")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch; use --device cpu --tiny to check the script")
    if args.tiny and args.model is None:
        name, cfg, extra = "tiny", dict(TINY), {"architecture": "toy", "tie_word_embeddings": False, "not_run": []}
    else:
        name = args.model or DEFAULT_MODEL
        cfg, extra = model_config(name)
    if args.layers:
        cfg["layers"] = args.layers
    torch.manual_seed(0)
    started = time.time()
    rows, skipped = [], []
    with torch.inference_mode():
        probe_chunk_mask(args.device)
        print(f"chunk attention: {CHUNK_MASK}", flush=True)
        model = Llama(cfg, args.device, args.dtype, extra["tie_word_embeddings"])
        kv_bytes_per_token = 2 * cfg["layers"] * cfg["kv_heads"] * cfg["head_dim"] * 2
        for row in grid(args.tiny):
            cached = row["batch"] * (row["length"] + 1) if row["kind"] != "prefill" else 0
            if (cached + row["chunk"] + row["past"]) * kv_bytes_per_token > KV_CAP_BYTES:
                continue
            groups = groups_of(model, row)
            try:
                graph_ms, eager_ms = time_step(model, groups, args.trials)
            except RuntimeError as exc:  # e.g. a row count _scaled_mm refuses: recorded, not timed
                skipped.append(row | {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
                print(f"{row}: skipped ({skipped[-1]['error']})", flush=True)
                continue
            finally:
                del groups
            rows.append(row | {"graph_ms": round(graph_ms, 4), "eager_ms": round(eager_ms, 4)})
            print(f"{row}: graph {graph_ms:.3f} ms, eager {eager_ms:.3f} ms", flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "steps.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": datetime.now(timezone.utc).isoformat(), "model_name": name,
            "model": cfg, **extra, "dtype": args.dtype, "skipped": skipped,
            "trials": args.trials, "chunk_attention": CHUNK_MASK, "seconds": round(time.time() - started, 1),
            "length": "decode: cached tokens per sequence (attends over length + 1); prefill: new tokens per sequence; "
                      "chunk/past: one prompt chunk's new tokens and the cached tokens it attends over besides them",
            "method": __doc__.split("\n\n")[1]}
    (args.output / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.output} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
