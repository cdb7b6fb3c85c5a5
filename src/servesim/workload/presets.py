"""Built-in workloads fitted from real traces (scripts/fit_presets.py; numbers in servesim/data/presets.json).

Lengths come from each trace's tabulated quantiles joined by a Gaussian copula; arrivals are Gamma with the
trace's mean rate and burstiness (CV of inter-arrival times) unless a rate is given. `longctx` also
reproduces Mooncake's prefix reuse: a request continues a recent context with the trace's probability and
shares the trace's fraction of its prompt with it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np

from servesim.errors import ServesimError, choices_error
from servesim.workload.lengths import from_quantiles


@cache
def presets() -> dict[str, dict]:
    return json.loads((resources.files("servesim") / "data" / "presets.json").read_text())


def get_preset(name: str) -> dict:
    table = presets()
    if name not in table:
        raise choices_error("workload", name, sorted(table), where="or --trace FILE, or --isl/--osl")
    return table[name]


def preset_lengths(name: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    p = get_preset(name)
    return _lengths(p, n, rng)


def _lengths(p: dict, n: int, rng: np.random.Generator):
    probs = p["probs"]
    prompt_q = np.interp(np.linspace(0, 1, 1001), probs, p["prompt_quantiles"])
    output_q = np.interp(np.linspace(0, 1, 1001), probs, p["output_quantiles"])
    return from_quantiles(prompt_q.tolist(), output_q.tolist(), p["rho"], n, rng)


def preset_prefixes(name: str, prompts: np.ndarray, rng: np.random.Generator) -> list | None:
    """Chained 512-token prefix ids reproducing the preset's prefix reuse, or None if it has none."""
    stats = get_preset(name).get("prefix")
    if not stats:
        return None
    probs = get_preset(name)["probs"]
    n = len(prompts)
    reuse = rng.random(n) < stats["reuse_probability"]
    fractions = np.interp(rng.random(n), probs, stats["shared_fraction_quantiles"])
    window = max(1, stats["reuse_window"])
    back = rng.integers(1, window + 1, n)
    next_id = 0
    chains: list[tuple[int, ...]] = []
    for i in range(n):
        blocks = -(-int(prompts[i]) // 512)
        shared: tuple[int, ...] = ()
        if reuse[i] and i > 0:
            parent = chains[max(0, i - int(back[i]))]
            # a reusing request shares at least one block, as every reuse in the trace does
            want = max(1, int(fractions[i] * prompts[i]) // 512)
            shared = parent[: min(len(parent), want, blocks)]
        fresh = blocks - len(shared)
        chains.append(shared + tuple(range(next_id, next_id + fresh)))
        next_id += fresh
    return chains


def preset_rate(name: str) -> tuple[float | None, float]:
    p = get_preset(name)
    return p["rate"], p["cv"]


def require_rate(name: str, rate: float | None) -> float:
    default, _ = preset_rate(name)
    value = rate if rate is not None else default
    if value is None:
        raise ServesimError(f"workload {name!r} has lengths but no arrival times: give --qps R or --concurrency N")
    return value
