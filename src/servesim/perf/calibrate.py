"""Fit a LinearStepModel to measured step times (the `duration_s` of each step in a `validate record` trace).

Each trace step lists the tokens every request got and its computed tokens before the step, which is all a
StepShape needs. The fit is least squares, robust to the stalls a shared machine adds (steps far above the
fit are dropped and the fit repeated) and kept physical (a term that comes out negative is removed). The
first steps of each trace are dropped too: they pay one-time costs (allocations, kernel selection).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.errors import ServesimError
from servesim.perf.base import StepShape, step_shape
from servesim.perf.linear import FEATURES, LinearStepModel, shape_features

WARMUP_STEPS = 3
UNCONTENDED = 0.85  # a step in which the recorder got less CPU than this share of the wall time was contended
TRIM_ROUNDS = 4
TRIM_MADS = 3.0  # a step more than this many robust deviations above the fit is a stall, not a cost


def trace_shape(step: dict) -> StepShape:
    context = step["context"]
    return step_shape((n, context[rid]) for rid, n in step["tokens"].items())


def trace_samples(traces: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(features, measured seconds) over every timed, non-empty step after the warm-up steps, leaving out steps in
    which other jobs took the CPU from the recorder (when the trace logs the CPU time it got, `cpu_s`)."""
    rows, times = [], []
    for trace in traces:
        for step in trace["steps"][WARMUP_STEPS:]:
            if "duration_s" not in step or "context" not in step or not step["tokens"]:
                continue
            if "cpu_s" in step and step["cpu_s"] < UNCONTENDED * step["duration_s"]:
                continue
            rows.append(shape_features(trace_shape(step)))
            times.append(step["duration_s"])
    if len(rows) < 2 * len(FEATURES):
        raise ServesimError(f"only {len(rows)} timed steps in the traces; a fit needs at least {2 * len(FEATURES)} "
                            "(record longer scenarios with `servesim validate record`)")
    return np.asarray(rows, dtype=np.float64), np.asarray(times, dtype=np.float64)


@dataclass
class Fit:
    model: LinearStepModel
    steps: int
    kept: int
    median_abs_rel_error: float
    p90_abs_rel_error: float

    def as_dict(self) -> dict:
        return {"steps": self.steps, "kept": self.kept, "median_abs_rel_error": self.median_abs_rel_error,
                "p90_abs_rel_error": self.p90_abs_rel_error}


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: drop the most negative term and refit until none is."""
    active = list(range(x.shape[1]))
    while True:
        coef = np.zeros(x.shape[1])
        coef[active] = np.linalg.lstsq(x[:, active], y, rcond=None)[0]
        negative = [i for i in active if coef[i] < 0]
        if not negative:
            return coef
        active.remove(min(negative, key=lambda i: coef[i]))


def fit_step_model(x: np.ndarray, y: np.ndarray) -> Fit:
    # Relative weighting: a 5 ms decode step counts as much as a 500 ms prefill.
    w = 1.0 / y
    keep = np.ones(len(y), dtype=bool)
    for _ in range(TRIM_ROUNDS):
        coef = _nonnegative_lstsq(x[keep] * w[keep, None], y[keep] * w[keep])
        residual = (y - x @ coef) / y
        spread = 1.4826 * np.median(np.abs(residual[keep] - np.median(residual[keep])))
        new_keep = residual < np.median(residual[keep]) + TRIM_MADS * max(spread, 1e-3)
        if (new_keep == keep).all():
            break
        keep = new_keep
    rel = np.abs(x @ coef / y - 1.0)
    model = LinearStepModel(*(float(c) for c in coef))
    return Fit(model, len(y), int(keep.sum()), float(np.median(rel[keep])), float(np.percentile(rel[keep], 90)))
