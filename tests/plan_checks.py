"""Checks shared by the planner tests (a plain module, not a pytest plugin)."""

from dataclasses import replace

import numpy as np

from servesim.metrics.latency import request_latencies
from servesim.simulate import run_simulation


def assert_flooded_run_respects(cfg, sample, a):
    """Every request of `sample` at once (the deployment runs flat out): the simulated throughput stays under the
    analytic bound `a` (and near it), and no request beats the TTFT/TPOT floors."""
    result = run_simulation(cfg, workload=replace(sample, arrival=sample.arrival / 1e4))
    served = result.summary["throughput"]["requests_per_s"]
    assert served <= a.ub_rps * (1 + 1e-9), (served, a.ub_rps, a.ub_terms)
    assert served > 0.3 * a.ub_rps, "the bound should not be vacuous"
    lat = request_latencies(result.requests)
    assert np.all(lat["ttft"] >= a.ttft_floor * (1 - 1e-9))
    has_tpot = ~np.isnan(lat["tpot"])
    assert np.all(lat["tpot"][has_tpot] >= a.tpot_floor[has_tpot] * (1 - 1e-9))
