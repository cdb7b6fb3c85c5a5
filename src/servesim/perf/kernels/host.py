"""An engine's per-step host (CPU) time, fixed plus per running request, fitted from a profile_host summary.

scripts/profile_host.py times vLLM's engine-core host work per step (scheduler, input preparation, output
bookkeeping; the model's compute subtracted) and writes summary.csv, one row of medians per step shape. The
decode rows, host seconds against running requests, are fitted by ordinary least squares in plain floats
(closed form, so the same file gives the same numbers everywhere).
"""

from __future__ import annotations

import csv
from pathlib import Path

from servesim.errors import ServesimError

REQUIRED = ("kind", "num_seqs", "host_s")


def read_decode_medians(path: Path) -> list[tuple[float, float]]:
    """(running requests, median host seconds) of every decode row of a profile_host summary.csv."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise ServesimError(f"{path}:1: missing column(s) {', '.join(missing)}; need {', '.join(REQUIRED)}")
        points = [(float(r["num_seqs"]), float(r["host_s"])) for r in reader if r["kind"] == "decode"]
    if len({n for n, _ in points}) < 2:
        raise ServesimError(f"{path}: needs decode rows at two or more batch sizes to fit host time, "
                            f"has {len(points)}")
    return points


def fit_host(points: list[tuple[float, float]]) -> dict[str, float]:
    """Least-squares host_fixed_s + host_per_seq_s * n over (n, seconds) points, rounded to the nanosecond."""
    count = len(points)
    mean_n = sum(n for n, _ in points) / count
    mean_t = sum(t for _, t in points) / count
    spread = sum((n - mean_n) ** 2 for n, _ in points)
    per_seq = sum((n - mean_n) * (t - mean_t) for n, t in points) / spread
    return {"host_fixed_s": round(mean_t - per_seq * mean_n, 9), "host_per_seq_s": round(per_seq, 9)}
