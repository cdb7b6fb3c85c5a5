"""The SLOs a report judges runs by, and the verdict: does a run meet them often enough?

One set of SLOs for the whole report, so runs are judged alike: given on the command line, else the first
run's. A run passes when the share of its requests meeting every SLO (DistServe's attainment; rejected
requests count as misses) reaches the target, 90% unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.errors import ServesimError
from servesim.metrics.summary import SLO
from servesim.report.runs import Run

DEFAULT_ATTAINMENT = 0.9


@dataclass(frozen=True)
class ReportSLO:
    ttft: float | None = None  # seconds
    tpot: float | None = None
    attainment: float = DEFAULT_ATTAINMENT

    @property
    def defined(self) -> bool:
        return self.ttft is not None or self.tpot is not None

    def describe(self) -> str:
        parts = [f"{name} <= {v * 1e3:g} ms" for name, v in (("TTFT", self.ttft), ("TPOT", self.tpot)) if v is not None]
        return " and ".join(parts)

    def met(self, run: Run, ttft: bool = True, tpot: bool = True) -> np.ndarray:
        req = run.requests
        e2e = np.where(req["completed"], req["e2e_s"], np.nan)
        lat = {"ttft": req["ttft_s"], "tpot": req["tpot_s"], "e2e": e2e}
        return SLO(self.ttft if ttft else None, self.tpot if tpot else None).met(lat)

    def verdict(self, run: Run) -> dict:
        """Share of requests meeting each SLO and all of them, and whether that reaches the target."""
        n = max(1, len(run.requests["arrival_s"]))
        out = {"ttft_share": None, "tpot_share": None, "share": None, "passed": None}
        if not self.defined:
            return out
        if self.ttft is not None:
            out["ttft_share"] = float(self.met(run, tpot=False).sum() / n)
        if self.tpot is not None:
            out["tpot_share"] = float(self.met(run, ttft=False).sum() / n)
        out["share"] = float(self.met(run).sum() / n)
        out["passed"] = out["share"] >= self.attainment
        return out


def report_slo(runs: list[Run], ttft: float | None, tpot: float | None,
               attainment: float = DEFAULT_ATTAINMENT) -> tuple[ReportSLO, list[str]]:
    """The report's SLOs and notes on runs whose own SLOs differ from them."""
    if not 0 < attainment <= 1:
        raise ServesimError(f"--slo-attainment {attainment} must be in (0, 1], e.g. 0.9 for 90% of requests")
    if ttft is None and tpot is None:
        for run in runs:
            if any(v is not None for v in run.slo()):
                ttft, tpot = run.slo()
                break
    chosen = ReportSLO(ttft, tpot, attainment)
    notes = []
    for run in runs:
        own = run.slo()
        if any(v is not None for v in own) and own != (ttft, tpot):
            notes.append(f"{run.name} was run with SLOs {ReportSLO(*own).describe()}; "
                         f"this report judges every run by {chosen.describe()}")
    return chosen, notes
