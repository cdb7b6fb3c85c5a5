"""Open-loop arrival processes. Each returns `n` arrival times (seconds, starting near 0) from a seeded generator."""

from __future__ import annotations

import numpy as np

from servesim.errors import ServesimError

ARRIVALS = ("poisson", "gamma", "constant")


def _check_rate(rate: float) -> None:
    if not rate > 0:
        raise ServesimError(f"request rate must be > 0 req/s, got {rate}")


def poisson(rate: float, n: int, rng: np.random.Generator) -> np.ndarray:
    _check_rate(rate)
    return np.cumsum(rng.exponential(1.0 / rate, n))


def gamma(rate: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gamma inter-arrivals with mean 1/rate and coefficient of variation `cv` (cv > 1: bursty, BurstGPT-style)."""
    _check_rate(rate)
    if not cv > 0:
        raise ServesimError(f"burstiness cv must be > 0, got {cv}")
    shape = 1.0 / cv**2
    return np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), n))


def constant(rate: float, n: int) -> np.ndarray:
    _check_rate(rate)
    return np.arange(n, dtype=np.float64) / rate


def make_arrivals(kind: str, rate: float, n: int, rng: np.random.Generator, cv: float = 1.0) -> np.ndarray:
    if kind == "poisson":
        return poisson(rate, n, rng)
    if kind == "gamma":
        return gamma(rate, cv, n, rng)
    if kind == "constant":
        return constant(rate, n)
    raise ServesimError(f"unknown arrival process {kind!r}; valid choices: {', '.join(ARRIVALS)}")


def count_for_duration(rate: float, duration: float) -> int:
    """How many requests a run of `duration` seconds at `rate` needs (the expected count, at least 1)."""
    _check_rate(rate)
    if not duration > 0:
        raise ServesimError(f"duration must be > 0 s, got {duration}")
    return max(1, int(round(rate * duration)))
