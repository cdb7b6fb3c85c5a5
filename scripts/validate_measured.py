"""Check servesim's GPU clock against the kernels and steps servesim's own scripts measured on real GPUs.

measurements/<gpu>/ holds what scripts/profile_kernels.py and scripts/profile_step.py wrote on a lent GPU (their
meta.json files say how and when). Two checks, no GPU needed:
1. Kernels: the shipped vLLM calibration (bundled fit for the H100; the H200 has no fit of its own and is
   extrapolated from its spec sheet with the H100's efficiencies) predicts each torch kernel timing. Only the bf16
   GEMM is the same library in both (cuBLAS); torch's attention, FP8 GEMM and unfused elementwise ops are other
   kernels than vLLM's, so their rows say how far those implementations differ, not how good the fit is.
2. Steps: whole Llama-3.1-8B steps (torch, CUDA graph) next to servesim's step time from (a) a calibration fitted
   on the same torch kernels (`servesim calibrate --kernels`: what remains is the operator breakdown and its
   composition), (b) the shipped vLLM calibration, (c) the roofline clock. The same for other models' steps where
   measurements/<gpu>/steps-<model>/ holds them (`profile_step.py --model <model>`, a bundled model's name).

Writes its section of docs/validation.md (between its markers) and prints it.

    .venv/bin/python scripts/validate_measured.py
"""

from __future__ import annotations

import csv
import functools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from validate_gpu import pct, write_section  # noqa: E402

from servesim.hardware.catalog import get_device  # noqa: E402
from servesim.models.catalog import get_model, list_models  # noqa: E402
from servesim.perf.base import step_shape  # noqa: E402
from servesim.perf.calibrated import CalibratedModel  # noqa: E402
from servesim.perf.kernels.calibrate import calibrate_dir, hardware  # noqa: E402
from servesim.perf.kernels.calibration import load_calibration  # noqa: E402
from servesim.perf.kernels.fit import predict  # noqa: E402
from servesim.perf.kernels.samples import read_csv_dir  # noqa: E402
from servesim.perf.roofline import RooflineModel  # noqa: E402

MEASURED = ROOT / "measurements"
BEGIN, END = "<!-- BEGIN MEASURED GPU CHECK (scripts/validate_measured.py) -->", "<!-- END MEASURED GPU CHECK -->"
STEP_MODEL = "llama-3.1-8b"


def kernel_errors(gpu: str, variant: str = "kernels") -> dict[str, np.ndarray]:
    """Signed relative error (predicted / measured - 1) of the shipped vLLM calibration, per family key."""
    device = get_device(gpu)
    shipped = load_calibration(device, "vllm")
    return {s.key: predict(s.family, shipped.coeffs[s.key], hardware(device, s.key), s) / s.latency - 1.0
            for s in read_csv_dir(MEASURED / gpu / variant)}


@functools.cache
def own_calibration(gpu: str):
    """The vLLM-engine calibration fitted on the torch kernels measured on `gpu` (`servesim calibrate --kernels`)."""
    with tempfile.TemporaryDirectory() as tmp:
        own_file = Path(tmp) / "torch.json"
        calibrate_dir(MEASURED / gpu / "kernels", gpu, "vllm", own_file)
        return load_calibration(get_device(gpu), "vllm", str(own_file))


def gemm_rows_lines(gpu: str) -> list[str]:
    """The bf16 GEMMs of one Llama-3.1-8B layer at token counts between whole 128-row tiles, next to the `own`
    calibration's price (a smooth function of m): cuBLAS picks its kernel by shape, not smoothly."""
    folder = MEASURED / gpu / "gemm-rows"
    if not (folder / "gemm.csv").exists():
        return []
    device, own = get_device(gpu), own_calibration(gpu)
    (gemm,) = [s for s in read_csv_dir(folder) if s.key == "gemm.bf16"]
    predicted = predict(gemm.family, own.coeffs[gemm.key], hardware(device, gemm.key), gemm)
    m = gemm.columns["m"]
    lines = ["", f"#### {gpu}: one layer's four bf16 GEMMs (QKV, O, gate-up, down) by rows m", "",
             f"`measurements/{gpu}/gemm-rows/` (same timing method, a grid of m between whole 128-row tiles): "
             "measured sum, the `own` calibration's sum (fitted on powers of two) and its error.", "",
             "| m | measured us | own us | err |", "|---|---|---|---|"]
    for rows in sorted(set(m.tolist())):
        at = m == rows
        meas, pred = float(gemm.latency[at].sum() * 1e6), float(predicted[at].sum() * 1e6)
        lines.append(f"| {int(rows)} | {meas:.0f} | {pred:.0f} | {(pred / meas - 1) * 100:+.0f}% |")
    return lines


def chunked_lines(gpus: list[str], rows: list[dict]) -> list[str]:
    """What the chunked and mixed steps show: no public kernel table has prefill attention over a cached past, so
    every shipped fit extrapolates that term; the torch kernels with a past (context_attention.csv, past > 0) are
    the only such measurements."""
    if not rows:
        return []
    own = [r["own"] / r["measured"] - 1 for r in rows]
    shipped = [r["shipped"] / r["measured"] - 1 for r in rows]
    out = ["", f"Chunked and mixed steps ({', '.join(sorted({r['gpu'] for r in rows}))}): `own` "
           f"{min(own) * 100:+.0f}% to {max(own) * 100:+.0f}%, `shipped` {min(shipped) * 100:+.0f}% to "
           f"{max(shipped) * 100:+.0f}%. No public kernel table (NVIDIA's, Vidur's) times prefill attention over a "
           "cached past, so the shipped fits extrapolate that term from whole prompts by query-key pairs; the "
           "torch kernels with a past are the only such measurements, and they are in the `own` fit:", ""]
    for g in gpus:
        device, cal = get_device(g), own_calibration(g)
        for s in read_csv_dir(MEASURED / g / "kernels"):
            if s.key != "context_attention" or not (s.columns["kv_tokens"] > s.columns["tokens"]).any():
                continue
            past = s.subset(s.columns["kv_tokens"] > s.columns["tokens"])
            errors = {name: predict(past.family, c.coeffs[past.key], hardware(device, past.key), past) / past.latency - 1
                      for name, c in (("own", cal), ("shipped", load_calibration(device, "vllm")))}
            out.append(f"- {g}: {len(past)} attention timings of a chunk over a past: `own` median "
                       f"{np.median(errors['own']) * 100:+.0f}% (range {errors['own'].min() * 100:+.0f}% to "
                       f"{errors['own'].max() * 100:+.0f}%), `shipped` median {np.median(errors['shipped']) * 100:+.0f}% "
                       f"(range {errors['shipped'].min() * 100:+.0f}% to {errors['shipped'].max() * 100:+.0f}%).")
    out += ["", "Torch's flash attention (FlashAttention 2) runs one thread block per 128 queries and head, so a short "
            "chunk over a long past occupies few SMs, and large chunks over a past measured slower per query-key pair "
            "than whole prompts; vLLM on Hopper runs FlashAttention 3, which we could not time here. The GEMMs explain "
            "part of the mixed rows: 32 decodes + 256 chunk tokens is 288 rows, and cuBLAS prices rows between whole "
            "tiles unevenly (table below)."]
    return out


@functools.cache  # the markdown, its FP8 parts and the tests read the same rows: price each step once
def step_rows(gpu: str, folder: str = "steps", dtype: str = "bf16", model_name: str = STEP_MODEL) -> list[dict]:
    """The steps of measurements/<gpu>/<folder>/ (or of `folder` if it is an absolute path), each with servesim's
    prices of it for `model_name`."""
    device, model = get_device(gpu), get_model(model_name).with_dtype(dtype)
    own, shipped = own_calibration(gpu), load_calibration(device, "vllm")
    # GPU-only prices: the measured steps are CUDA-graph replays, with no engine host work to overlap or add
    own, shipped = (replace(cal, host_fixed=0.0, host_per_seq=0.0) for cal in (own, shipped))
    rows = []
    for r in _read_steps(MEASURED / gpu / folder):
        b, n, chunk, past = r["batch"], r["length"], r["chunk"], r["past"]
        work = [(n, 0)] * b if r["kind"] == "prefill" else [(1, n)] * b
        shape = step_shape(work + ([(chunk, past)] if chunk else []))
        limits = {"max_tokens": max(8192, shape.num_tokens), "max_num_seqs": max(256, shape.num_seqs),
                  "cuda_graphs": False}
        predicted = {name: CalibratedModel(model, device, calibration=cal, **limits).step_time(shape) * 1e3
                     for name, cal in (("own", own), ("shipped", shipped))}
        predicted["roofline"] = RooflineModel(model, device).step_time(shape) * 1e3
        rows.append(r | {"measured": r["graph_ms"], "eager": r["eager_ms"]} | predicted)
    return rows


def step_table_rows(gpu: str, rows: list[dict], model: str = "") -> list[str]:
    lines = []
    for r in rows:
        cells = " | ".join(f"{r[k]:.2f} ({(r[k] / r['measured'] - 1) * 100:+.0f}%)" for k in ("own", "shipped", "roofline"))
        lines.append(f"| {gpu} | {model + ' | ' if model else ''}{r['kind']} | {r['batch']} | {r['length']} | {r['chunk'] or '-'} | {r['past'] or '-'} | "
                     f"{r['measured']:.2f} | {r['eager']:.2f} | {cells} |")
    return lines


def step_summary(gpu: str, rows: list[dict]) -> list[str]:
    out = []
    for k in ("own", "shipped", "roofline"):
        err = np.abs([r[k] / r["measured"] - 1 for r in rows])
        out.append(f"{gpu} {k}: median |error| {pct(float(np.median(err)))}, max {pct(float(err.max()))}")
    return out


def fp8_lines(gpus: list[str]) -> list[str]:
    """The same steps with FP8 weights (`profile_step.py --dtype fp8`), next to bf16 steps timed on the same lease."""
    out = []
    for g in gpus:
        folder = MEASURED / g / "steps-fp8"
        if not (folder / "steps.csv").exists():
            continue
        rows = step_rows(g, "steps-fp8", "fp8")
        bf16 = _graph_ms(folder / "bf16")
        ratio = [r["measured"] / bf16[k] for r in rows if (k := (r["kind"], r["batch"], r["length"], r["chunk"],
                                                                   r["past"])) in bf16]
        gaps = [r["measured"] - r["own"] for r in rows if r["kind"] == "decode"]
        bf16_gaps = [r["measured"] - r["own"] for r in step_rows(g, "steps-fp8/bf16") if r["kind"] == "decode"]
        out += ["", f"#### {g}: the same steps with FP8 weights", "",
                f"`measurements/{g}/steps-fp8/` (`profile_step.py --dtype fp8`): the layers' GEMMs as `torch._scaled_mm` "
                "with per-tensor scales, each input cast to e4m3 first; embedding, LM head and KV cache bf16. servesim "
                "prices them with `--dtype fp8` (the same columns as above; `own` includes the FP8 GEMMs fitted on the "
                f"torch timings). Against the bf16 steps timed on the same lease (`steps-fp8/bf16/`), each FP8 step took "
                f"{min(ratio):.2f}-{max(ratio):.2f}x the bf16 time (median {float(np.median(ratio)):.2f}).", "",
                "| GPU | step | batch | length | chunk | past | measured ms | eager ms | own ms (err) | shipped ms (err) | "
                "roofline ms (err) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        out += step_table_rows(g, rows)
        out += ["", "Median absolute error: " + "; ".join(step_summary(g, rows)) + ". Every `own` decode step is low, "
                f"by {min(gaps):.2f}-{max(gaps):.2f} ms (the bf16 decodes of the same lease: {min(bf16_gaps):.2f}-"
                f"{max(bf16_gaps):.2f} ms): consistent with the unpriced kernels of the bf16 steps plus the 128 input casts "
                "(4 GEMMs x 32 layers) that vLLM fuses into the norm or activation before each GEMM."]
        out += fp8_extra_lines(g)
    return out


def fp8_extra_lines(gpu: str) -> list[str]:
    """The two checks of `measurements/<gpu>/fp8-extra/` (profile_kernels.py --only gemm --only cast): the input casts
    timed alone, against how much more the FP8 decodes miss than the bf16 ones; and FP8 GEMMs below 16 rows,
    where the `own` fit (timed at multiples of 16) extrapolates."""
    folder = MEASURED / gpu / "fp8-extra"
    if not (folder / "cast.csv").exists():
        return []
    with (folder / "cast.csv").open(newline="") as fh:
        cast = {(int(r["tokens"]), int(r["width"])): float(r["latency_us"]) for r in csv.DictReader(fh)}
    model = get_model(STEP_MODEL)
    layers, hidden, inter = model.num_layers, model.hidden_size, model.intermediate_size
    bf16 = {(r["batch"], r["length"]): r["measured"] - r["own"] for r in step_rows(gpu, "steps-fp8/bf16")
            if r["kind"] == "decode"}
    out = ["", f"The casts timed alone on a later lease (`measurements/{gpu}/fp8-extra/cast.csv`, `profile_kernels.py "
           f"--only cast`): per decode step {layers} x (3 casts of (batch, {hidden}) + 1 of (batch, {inter})), next to "
           "how much more the FP8 decode misses (`own`) than the bf16 decode of the same shape timed beside it. Up to "
           "32 sequences the casts account for the difference; at 128-256 they exceed it, where the `own` fits' "
           "other errors at those sizes enter:", "",
           "| batch | length | casts ms | FP8 miss - bf16 miss, ms |", "|---|---|---|---|"]
    for r in step_rows(gpu, "steps-fp8", "fp8"):
        b = r["batch"]
        if r["kind"] != "decode" or (b, hidden) not in cast:
            continue
        casts = layers * (3 * cast[(b, hidden)] + cast[(b, inter)]) / 1e3
        out.append(f"| {b} | {r['length']} | {casts:.3f} | {r['measured'] - r['own'] - bf16[(b, r['length'])]:.3f} |")
    (gemm,) = [s for s in read_csv_dir(folder) if s.key == "gemm.fp8"]
    predicted = predict(gemm.family, own_calibration(gpu).coeffs[gemm.key], hardware(get_device(gpu), gemm.key), gemm)
    m = gemm.columns["m"]
    cells = [f"{int(rows)}: {(predicted[m == rows].sum() / gemm.latency[m == rows].sum() - 1) * 100:+.0f}%"
             for rows in sorted(set(m.tolist()))]
    out += ["", "One layer's four FP8 GEMMs (`fp8-extra/gemm.csv`) against the `own` fit, by rows m "
            f"(the fit was timed at m >= 16): {'; '.join(cells)}."]
    return out


def other_model_folders(gpus: list[str], measured: Path = MEASURED) -> list[tuple[str, str, Path]]:
    """(gpu, model, folder) for each measured/<gpu>/steps-<model>/ with a steps.csv whose <model> is a bundled
    model's name (so steps-fp8/ is not one)."""
    names = {m.name for m in list_models()}
    return [(g, folder.name.removeprefix("steps-"), folder) for g in gpus
            for folder in sorted((measured / g).glob("steps-*"))
            if folder.name.removeprefix("steps-") in names and (folder / "steps.csv").exists()]


def other_model_lines(gpus: list[str], measured: Path = MEASURED) -> list[str]:
    """Whole steps of other models than Llama-3.1-8B (`profile_step.py --model`), priced as the 8B steps are: the
    same `own` calibration (the GPU's torch kernels), the shipped one and the roofline, with the model's shape."""
    found = other_model_folders(gpus, measured)
    out = ["", "### Whole steps of other models (TP 1)", ""]
    if not found:
        return out + ["No measurements yet: `scripts/profile_step.py --model <model> -o "
                      "measurements/<gpu>/steps-<model>/` writes them (`scripts/gpu_models_check.sh` runs "
                      "Llama-3.2-1B, Qwen2.5-7B and Qwen3-8B on one lease)."]
    out += ["`measurements/<gpu>/steps-<model>/` (`profile_step.py --model <model>`): the same Llama-shaped torch "
            "step and grid with the model's dimensions from its bundled config (steps whose KV cache would pass "
            "40 GiB are left out), priced with that model by the same three clocks as the Llama-3.1-8B steps above.",
            "",
            "| GPU | model | step | batch | length | chunk | past | measured ms | eager ms | own ms (err) | "
            "shipped ms (err) | roofline ms (err) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for g, name, folder in found:
        meta = json.loads((folder / "meta.json").read_text())
        spec = get_model(name)
        want = {"hidden": spec.hidden_size, "layers": spec.num_layers, "heads": spec.num_heads,
                "kv_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "intermediate": spec.intermediate_size,
                "vocab": spec.vocab_size}
        if meta.get("model") != want:
            raise SystemExit(f"{folder}/meta.json: the steps were run with {meta.get('model')}, not {name}'s {want}")
        rows = step_rows(g, str(folder.resolve()), meta.get("dtype", "bf16"), name)
        out += step_table_rows(g, rows, name)
        gaps = [r["measured"] - r["own"] for r in rows if r["kind"] == "decode"]
        errors = {k: np.abs([r[k] / r["measured"] - 1 for r in rows]) for k in ("own", "shipped", "roofline")}
        not_run = meta.get("not_run") or []
        notes.append(f"- {g} {name}: {len(rows)} steps, {meta['device']}, {meta['date'][:10]}; median |error| "
                     + ", ".join(f"`{k}` {pct(float(np.median(e)))} (max {pct(float(e.max()))})"
                                 for k, e in errors.items())
                     + (f"; measured minus `own` decode step: {min(gaps):+.2f} to {max(gaps):+.2f} ms "
                        f"(median {float(np.median(gaps)):+.2f}) over {spec.num_layers} layers"
                        if gaps else "")
                     + (f"; not run (nor priced by servesim): {'; '.join(not_run)}" if not_run else "") + ".")
    return out + ["", "Median absolute error by GPU and model:", ""] + notes


def _read_steps(folder: Path) -> list[dict]:
    """steps.csv rows with numbers parsed; files from before chunked steps were measured have no chunk/past."""
    with (folder / "steps.csv").open(newline="") as fh:
        return [{"kind": r["kind"], "batch": int(r["batch"]), "length": int(r["length"]),
                 "chunk": int(r.get("chunk") or 0), "past": int(r.get("past") or 0),
                 "graph_ms": float(r["graph_ms"]), "eager_ms": float(r["eager_ms"])} for r in csv.DictReader(fh)]


def repeatability(gpu: str) -> str:
    """How far a second run of the same scripts (another lease, another machine of the kind) moved each timing."""
    repeat = MEASURED / gpu / "repeat"
    if not repeat.is_dir():
        return ""
    first, again = _latency_by_point(MEASURED / gpu / "kernels"), _latency_by_point(repeat / "kernels")
    moved = np.abs([again[k] / first[k] - 1 for k in again.keys() & first.keys()])
    first = _graph_ms(MEASURED / gpu / "steps")
    again = _graph_ms(repeat / "steps")
    steps = np.abs([again[k] / first[k] - 1 for k in again.keys() & first.keys()])
    return (f"Repeatability ({gpu}, `measurements/{gpu}/repeat/`, the same grids on a second lease): kernel timings "
            f"moved by median {pct(float(np.median(moved)))} (p90 {pct(float(np.quantile(moved, 0.9)))}, max "
            f"{pct(float(moved.max()))}, {len(moved)} points), step timings by median "
            f"{pct(float(np.median(steps)))} (max {pct(float(np.max(steps)))}).")


def _latency_by_point(folder: Path) -> dict[tuple, float]:
    """Each kernel timing by (family, its feature values): the points two runs of the grid have in common."""
    return {(s.key, *(float(s.columns[c][i]) for c in sorted(s.columns))): float(s.latency[i])
            for s in read_csv_dir(folder) for i in range(len(s))}


def _graph_ms(folder: Path) -> dict[tuple, float]:
    return {(r["kind"], r["batch"], r["length"], r["chunk"], r["past"]): r["graph_ms"] for r in _read_steps(folder)}


def markdown() -> str:
    gpus = sorted(p.name for p in MEASURED.iterdir() if (p / "kernels").is_dir())
    lines = [BEGIN, "## GPU kernels and steps servesim measured itself", "",
             "Made on GPUs lent to one development session, with `scripts/profile_kernels.py` and "
             "`scripts/profile_step.py` (their docstrings and each `meta.json` say how: torch, CUDA-graph replay, "
             "operands cycled through 256 MiB so they come from HBM). The files are in `measurements/`; this "
             "section is written by `.venv/bin/python scripts/validate_measured.py` (part of `make validate-gpu`), "
             "which needs no GPU.", ""]
    metas = {g: json.loads((MEASURED / g / "kernels" / "meta.json").read_text()) for g in gpus}
    for g, meta in metas.items():
        p = meta["peaks"]
        lines.append(f"- **{g}**: {meta['device']}, torch {meta['torch']} (CUDA {meta['cuda']}), {meta['date'][:10]}; "
                     f"{p['sms']} SMs, L2 {p['l2_bytes'] / 2**20:.0f} MiB; 8192^3 bf16 product "
                     f"{p['bf16_mm_8192_tflops']} TFLOP/s, 2 GiB copy {p['copy_2GiB_read_plus_write_tb_s']} TB/s "
                     f"(read + write); spec sheet {get_device(g).bf16_flops / 1e12:.0f} TFLOP/s, "
                     f"{get_device(g).mem_bandwidth / 1e12:.2f} TB/s.")
    lines += [""] + [line for g in gpus if (line := repeatability(g))]
    lines += ["", "### Kernels: the shipped vLLM calibration against torch's kernels", "",
              "Median error = median of predicted / measured - 1 (negative: servesim predicts faster). The H200 "
              "column is an extrapolation: no H200 measurement was ever fitted.", "",
              "| family | kernel in torch | " + " | ".join(f"{g} n | {g} median | {g} median abs" for g in gpus) + " |",
              "|---|---|" + "---|---|---|" * len(gpus)]
    what = {"gemm.bf16": "cuBLAS (as vLLM)", "gemm.fp8": "`_scaled_mm`, per-tensor scales (vLLM: CUTLASS)",
            "context_attention": "SDPA (vLLM: FlashAttention varlen)",
            "generation_attention": "SDPA, contiguous KV (vLLM: paged)",
            "elementwise.norm": "`F.rms_norm` (vLLM: fused)", "elementwise.add": "`torch.add` (vLLM: fused with norm)",
            "elementwise.act": "SiLU, then mul (vLLM: one kernel)"}
    errors = {g: kernel_errors(g) for g in gpus}
    for key, name in what.items():
        cells = []
        for g in gpus:
            e = errors[g].get(key)
            cells.append("- | - | -" if e is None else
                         f"{len(e)} | {np.median(e) * 100:+.1f}% | {pct(float(np.median(np.abs(e))))}")
        lines.append(f"| {key} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "bf16 GEMM by token count (rows m), median error; the same grid timed the old way (eager launches, "
              "the same operands every launch, so small-m weights stay in L2) beside it:", "",
              "| GPU | timing | m 1-16 | m 17-256 | m 257-2048 | m 2049-16384 |", "|---|---|---|---|---|---|"]
    for g in gpus:
        for variant, label in (("kernels", "CUDA graph, cold operands"), ("kernels-eager-warm", "eager, warm L2")):
            (gemm,) = [s for s in read_csv_dir(MEASURED / g / variant) if s.key == "gemm.bf16"]
            e = kernel_errors(g, variant)["gemm.bf16"]
            m = gemm.columns["m"]
            cells = [f"{np.median(e[(m >= lo) & (m <= hi)]) * 100:+.1f}%"
                     for lo, hi in ((1, 16), (17, 256), (257, 2048), (2049, 16384))]
            lines.append(f"| {g} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "### Whole steps of Llama-3.1-8B (TP 1)", "",
              "Measured: one step replayed as a CUDA graph (median of 10). `own` = servesim with a calibration "
              "fitted on the torch kernels above (RoPE and the all-reduce keep the shipped fit), `shipped` = the "
              "shipped vLLM calibration, `roofline` = `--cost-model roofline`. Decode: `batch` sequences with "
              "`length` cached tokens each; prefill: `batch` sequences of `length` new tokens; chunked: one prompt "
              "chunk of `chunk` new tokens over `past` cached ones (vLLM's chunked prefill); mixed: `batch` decodes "
              "and such a chunk in one step.", "",
              "| GPU | step | batch | length | chunk | past | measured ms | eager ms | own ms (err) | shipped ms (err) | "
              "roofline ms (err) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary, decode, chunked = [], [], []
    for g in gpus:
        rows = step_rows(g)
        decode += [r for r in rows if r["kind"] == "decode"]
        chunked += [r | {"gpu": g} for r in rows if r["chunk"]]
        lines += step_table_rows(g, rows)
        summary += step_summary(g, rows)
    gaps = [r["measured"] - r["own"] for r in decode]
    host = sorted(r["eager"] - r["measured"] for r in decode)
    lines += ["", "Median absolute error over each GPU's steps: " + "; ".join(summary) + ".", "",
              f"Every `own` decode step is low, by {min(gaps):.2f}-{max(gaps):.2f} ms whatever the batch and context. "
              "That is consistent with the kernels the torch model runs and servesim does not price as such: "
              "per layer, RoPE as three kernels for each of q and k, two K/V cache copies and a transpose copy, "
              "where vLLM runs one fused RoPE and one cache write (priced from the shipped fit); about nine "
              "launches of 2-3 us over 32 layers. The eager column is the same step launched op by op from "
              f"Python: decode steps take {host[0]:.1f}-{host[-1]:.1f} ms more (median "
              f"{float(np.median(host)):.1f} ms), the host time that CUDA graphs remove."]
    lines += chunked_lines(gpus, chunked)
    lines += fp8_lines(gpus)
    for g in gpus:
        lines += gemm_rows_lines(g)
    lines += other_model_lines(gpus)
    lines += ["", END]
    return "\n".join(lines) + "\n"


def main() -> None:
    section = markdown()
    write_section(ROOT / "docs" / "validation.md", section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
