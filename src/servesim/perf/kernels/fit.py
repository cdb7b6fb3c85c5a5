"""Fit a family's coefficients to measurements: robust least squares on log latency, numpy only.

Levenberg-Marquardt over the logarithms of the coefficients (all are positive), clipped to each family's
bounds; the Jacobian is taken by finite differences (a family has at most nine coefficients). The loss is
soft-L1 on the log error, by iteratively reweighted least squares: a few odd kernels (a library switching
algorithms at one shape) must not pull the whole surface away from the typical error.
"""

from __future__ import annotations

import numpy as np

from servesim.perf.kernels import forms
from servesim.perf.kernels.forms import Family, Hardware
from servesim.perf.kernels.samples import Samples

ROBUST_ROUNDS = 4
MAX_FIT_POINTS = 6000  # a fixed, evenly spread subset keeps a fit to seconds; errors are reported on all points
ROBUST_SCALE = 0.05  # log error (about 5%) beyond which a point counts linearly, not quadratically


def predict(family: str, coeffs, hw: Hardware, s: Samples) -> np.ndarray:
    c = s.columns
    if family == "gemm":
        return forms.gemm_time(coeffs, hw, c["m"], c["n"], c["k"], c["weight_bytes"], s.meta.get("gemm_tiles"))
    if family == "context_attention":
        return forms.prefill_attention_time(coeffs, hw, c["seqs"], c["tokens"], c["pairs"], c["kv_tokens"], c["heads"],
                                            c["kv_heads"], c["head_dim"], c["kv_bytes"])
    if family == "generation_attention":
        return forms.decode_attention_time(coeffs, hw, c["seqs"], c["kv_tokens"], c["heads"], c["kv_heads"],
                                           c["head_dim"], c["kv_bytes"], c.get("kv_alias", 0.0),
                                           c.get("alias_by_tile", 1.0), s.meta.get("multi_block", False),
                                           c.get("rope_pass", 0.0))
    if family == "allreduce":
        return forms.allreduce_time(coeffs, hw, c["message_bytes"], c["gpus"], c["path"], c["tokens"])
    if family == "elementwise":
        return forms.elementwise_time(coeffs, hw, c["bytes"], c["rows"])
    raise KeyError(family)


def scored(s: Samples) -> Samples:
    """The rows a fit is judged on: all but reference rows (another library's own table, fitted alongside)."""
    reference = s.columns.get("reference")
    return s if reference is None or not reference.any() else s.subset(reference == 0)


def fit(s: Samples, hw: Hardware, start=None, iterations: int = 60) -> tuple[list[float], dict]:
    """Coefficients of `s.family` minimising squared log error on `s`, and fit statistics."""
    fam: Family = forms.FAMILIES[s.family]
    lo, hi = np.log(fam.lower), np.log(fam.upper)
    full = s
    if len(s) > MAX_FIT_POINTS:
        s = s.subset(np.linspace(0, len(s) - 1, MAX_FIT_POINTS).astype(np.int64))
    log_meas = np.log(s.latency)

    weight = np.ones(len(s))

    def log_error(z):
        with np.errstate(all="ignore"):
            r = np.log(predict(s.family, np.exp(z), hw, s)) - log_meas
        return np.where(np.isfinite(r), r, 1e3)

    z = np.clip(np.log(start if start is not None else fam.initial), lo, hi)
    for _ in range(ROBUST_ROUNDS):
        z = _levenberg_marquardt(lambda z: log_error(z) * weight, z, lo, hi, iterations)
        weight = (1.0 + (log_error(z) / ROBUST_SCALE) ** 2) ** -0.25  # soft-L1: sqrt of 1/sqrt(1 + (r/d)^2)
    coeffs = [float(v) for v in np.exp(z)]
    full = scored(full)
    err = np.abs(predict(full.family, coeffs, hw, full) / full.latency - 1.0)
    return coeffs, {"n": int(len(full)), "median_abs_err": float(np.median(err)), "p90_abs_err": float(np.quantile(err, 0.9))}


def _levenberg_marquardt(residual, z, lo, hi, iterations):
    r = residual(z)
    cost = float(r @ r)
    damping = 1e-3
    for _ in range(iterations):
        jac = np.empty((r.size, z.size))
        for j in range(z.size):
            zp = z.copy()
            zp[j] += 1e-6
            jac[:, j] = (residual(zp) - r) / 1e-6
        a, g = jac.T @ jac, jac.T @ r
        diag = np.diag(a) + 1e-9
        for _ in range(30):
            zn = np.clip(z - np.linalg.solve(a + damping * np.diag(diag), g), lo, hi)
            rn = residual(zn)
            cn = float(rn @ rn)
            if cn < cost:
                break
            damping *= 4.0
        else:
            return z
        gain = cost - cn
        z, r, cost = zn, rn, cn
        damping = max(damping / 3.0, 1e-9)
        if gain < 1e-9 * cost + 1e-15:
            break
    return z
