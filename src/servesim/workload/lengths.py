"""Request length distributions: (prompt, output) token counts for n requests."""

from __future__ import annotations

import math

import numpy as np

from servesim.errors import ServesimError

LENGTHS = ("fixed", "uniform", "lognormal", "empirical", "quantiles")


def fixed(isl: int, osl: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    if isl < 1 or osl < 1:
        raise ServesimError(f"--isl and --osl must be >= 1 token, got {isl} and {osl}")
    return np.full(n, isl, dtype=np.int64), np.full(n, osl, dtype=np.int64)


def uniform(lo: tuple[int, int], hi: tuple[int, int], n: int, rng: np.random.Generator):
    """Prompt uniform in [lo[0], hi[0]], output uniform in [lo[1], hi[1]]."""
    for a, b in zip(lo, hi):
        if not 1 <= a <= b:
            raise ServesimError(f"uniform lengths need 1 <= low <= high, got {a}..{b}")
    return rng.integers(lo[0], hi[0] + 1, n), rng.integers(lo[1], hi[1] + 1, n)


def lognormal(median: tuple[float, float], sigma: tuple[float, float], n: int, rng: np.random.Generator,
              max_len: tuple[int, int] = (1 << 20, 1 << 20)):
    out = []
    for m, s, cap in zip(median, sigma, max_len):
        if not m >= 1 or not s >= 0:
            raise ServesimError(f"lognormal lengths need median >= 1 and sigma >= 0, got {m}, {s}")
        x = np.rint(rng.lognormal(math.log(m), s, n))
        out.append(np.clip(x, 1, cap).astype(np.int64))
    return out[0], out[1]


def empirical(prompts: np.ndarray, outputs: np.ndarray, n: int, rng: np.random.Generator):
    """Resample (prompt, output) pairs jointly from observed rows."""
    idx = rng.integers(0, len(prompts), n)
    return np.asarray(prompts)[idx].astype(np.int64), np.asarray(outputs)[idx].astype(np.int64)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF (Abramowitz & Stegun 7.1.26 erf, |error| < 1.5e-7), vectorised without scipy."""
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-x * x)
    return 0.5 * (1.0 + np.sign(z) * erf)


def from_quantiles(prompt_q: list[float], output_q: list[float], rho: float, n: int, rng: np.random.Generator):
    """Sample from tabulated quantiles (inverse CDF, linear between quantiles) with a Gaussian copula whose
    correlation `rho` reproduces the prompt/output rank correlation of the source trace."""
    if not -1.0 < rho < 1.0:
        raise ServesimError(f"length correlation must be in (-1, 1), got {rho}")
    z1 = rng.standard_normal(n)
    z2 = rho * z1 + math.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
    out = []
    for z, q in ((z1, prompt_q), (z2, output_q)):
        grid = np.linspace(0.0, 1.0, len(q))
        out.append(np.maximum(1, np.rint(np.interp(_norm_cdf(z), grid, q))).astype(np.int64))
    return out[0], out[1]
