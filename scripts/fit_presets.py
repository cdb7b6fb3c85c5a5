"""Fit the built-in workload presets from the real traces in ../shared/data/traces.

Writes src/servesim/data/presets.json: per preset the mean request rate and burstiness (CV of inter-arrival
times) of the trace, tabulated length quantiles, the Gaussian-copula correlation reproducing the
prompt/output rank correlation, and for Mooncake the prefix-sharing statistics. Only these numbers ship.

    python scripts/fit_presets.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from servesim.workload.traces import load_lengths, load_trace  # noqa: E402

PROBS = np.round(np.concatenate([np.linspace(0.0, 0.95, 96), np.linspace(0.955, 0.995, 9), [0.998, 0.999, 1.0]]), 6)
SOURCES = {
    "chat": ("traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "Azure LLM inference trace 2023, conversation (CC-BY-4.0)"),
    "code": ("traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv", "Azure LLM inference trace 2023, code (CC-BY-4.0)"),
    "longctx": ("traces/mooncake_fast25/conversation_trace.jsonl", "Mooncake FAST'25 conversation trace (Apache-2.0)"),
    "sharegpt": ("traces/vidur_processed/sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "ShareGPT length stats, Llama-2 tokenizer, via Sarathi-Serve (Apache-2.0)"),
}


def ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    # average ties so repeated lengths do not bias the correlation
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return (sums / counts)[inverse]


def copula_rho(prompts: np.ndarray, outputs: np.ndarray) -> float:
    spearman = float(np.corrcoef(ranks(prompts), ranks(outputs))[0, 1])
    return 2.0 * math.sin(math.pi * spearman / 6.0)


def quantiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(x, PROBS)]


def prefix_stats(prefix_ids: list[tuple[int, ...]], prompts: np.ndarray) -> dict:
    seen: set[int] = set()
    last_seen: dict[int, int] = {}
    shared_fraction, distance = [], []
    for i, ids in enumerate(prefix_ids):
        shared = 0
        for block in ids:
            if block in seen:
                shared += 1
            else:
                break
        if shared:
            shared_fraction.append(min(1.0, shared * 512 / prompts[i]))
            distance.append(i - last_seen[ids[0]])
        for block in ids:
            seen.add(block)
        if ids:
            last_seen[ids[0]] = i
    n = len(prefix_ids)
    return {
        "reuse_probability": len(shared_fraction) / n,
        "shared_fraction_quantiles": quantiles(np.asarray(shared_fraction)),
        "reuse_window": int(np.median(distance)) * 2 if distance else 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src/servesim/data/presets.json"))
    args = ap.parse_args()
    data = Path(args.data)
    presets = {}
    for name, (rel, cite) in SOURCES.items():
        path = data / rel
        entry = {"source": cite, "file": rel, "probs": [float(p) for p in PROBS]}
        if name == "sharegpt":
            prompts, outputs = load_lengths(path)
            entry.update(rate=None, cv=1.0)
        else:
            w = load_trace(path)
            prompts, outputs = w.prompt_len, w.output_len
            gaps = np.diff(w.arrival)
            entry.update(rate=round((len(w) - 1) / float(w.arrival[-1]), 6), cv=round(float(gaps.std() / gaps.mean()), 6))
            if w.prefix_ids is not None:
                entry["prefix"] = prefix_stats(w.prefix_ids, prompts)
        entry.update(
            requests=int(len(prompts)),
            prompt_quantiles=quantiles(prompts),
            output_quantiles=quantiles(outputs),
            rho=round(copula_rho(prompts, outputs), 6),
            prompt_mean=round(float(prompts.mean()), 3),
            output_mean=round(float(outputs.mean()), 3),
        )
        presets[name] = entry
    Path(args.out).write_text(json.dumps(presets, indent=1) + "\n")
    for name, e in presets.items():
        print(f"{name}: rate={e['rate']} cv={e['cv']} rho={e['rho']} prompt_mean={e['prompt_mean']} output_mean={e['output_mean']}")


if __name__ == "__main__":
    main()
