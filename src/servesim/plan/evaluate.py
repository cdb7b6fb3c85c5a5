"""The unit of work an executor runs: probe one configuration at fixed rates and/or search its capacity.

Tasks are plain data and `evaluate` is a pure function of them, so a process pool, a Ray cluster or the
calling process give identical results. Probes found in the cache travel with the task; new ones travel back
for the parent to store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.config import RunConfig
from servesim.plan.capacity import Capacity, Criterion, search_capacity
from servesim.plan.probe import Probe, ProbeLength, at_rate, run_probe
from servesim.workload.workload import Workload


@dataclass
class Task:
    key: str  # cache key of (config, workload sample, version)
    config: RunConfig
    workload: Workload  # the sample at 1 request/s (probes take its first requests), or as is if not rescale
    length: ProbeLength | None = None  # how many requests a probe at a rate takes; None: all
    bound: float | None = None  # search the capacity below this rate
    criterion: Criterion | None = None
    tolerance: float = 0.05
    rates: tuple[float, ...] = ()  # rates to probe in any case
    rescale: bool = True  # False: the workload is already at its rate (sweeps)
    cached: dict[float, Probe] = field(default_factory=dict)


@dataclass
class TaskResult:
    capacity: Capacity | None
    probes: dict[float, Probe]  # every probe the task used, by rate
    new: list[Probe]  # the ones simulated now


def evaluate(task: Task) -> TaskResult:
    probes: dict[float, Probe] = {}
    new: list[Probe] = []

    def probe_at(rate: float) -> Probe:
        if rate not in probes:
            if rate in task.cached:
                probes[rate] = task.cached[rate]
            else:
                workload = at_rate(task.workload, rate, task.length) if task.rescale else task.workload
                probes[rate] = run_probe(task.config, workload, rate)
                new.append(probes[rate])
        return probes[rate]

    for rate in task.rates:
        probe_at(rate)
    capacity = None
    if task.bound is not None:
        capacity = search_capacity(probe_at, task.bound, task.criterion, task.tolerance)
    return TaskResult(capacity, probes, new)
