"""The planner: the cheapest deployment that serves a target rate within the SLOs.

1. Enumerate replica configurations (GPU x TP x PP x dtype x scheduler knobs), and with --disagg xPyD units
   (a prefill pool and a decode pool, each with its own GPU type, TP and replica count).
2. Assess each without simulating (plan/bounds.py): drop those that do not fit, that cannot reach the
   attainment target even unloaded, or that would need more than --max-gpus even at their throughput bound.
3. Visit the rest cheapest-first by their lower-bound cost and search each one's capacity by simulation
   (plan/capacity.py). A candidate whose lower-bound cost cannot beat the best plan found so far is pruned:
   the bound is exact, so the winner equals an exhaustive search's. To keep the visited set independent of
   timing and executor, the decision on the i-th candidate sees the results of candidates 1..i-window only.
4. Replicas = ceil(target / capacity); rank by cost per hour, then by spare capacity.
5. Simulate the best few as whole deployments (all their replicas behind the router, at the target rate) and
   verify the winner that way on a larger sample.

The capacity search simulates one replica (one xPyD unit, itself a cluster of x + y replicas) at a time, so
deciding how many replicas to deploy treats N replicas as one at target/N requests/s (an even split by a load
balancer). Step 5 checks that with the cluster simulator: N replicas, the router, the whole target rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.hardware.catalog import get_device
from servesim.hardware.links import kv_link
from servesim.metrics.summary import SLO
from servesim.plan.bounds import Assessment, Assessor
from servesim.plan.cache import ResultCache
from servesim.plan.capacity import Capacity, Criterion
from servesim.plan.evaluate import Task, TaskResult
from servesim.plan.prices import Prices
from servesim.plan.probe import Probe, ProbeLength, config_key, prefix, workload_fingerprint
from servesim.plan.space import Candidate, DisaggCandidate, SearchSpace
from servesim.simulate import cluster_pools, resolve_model
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

SAMPLE_REQUESTS = 20_000  # the workload sample every probe takes its first requests from
RANKED = "ranked"  # meets the target within --max-gpus
STATUSES = {
    RANKED: "meets the target rate within the SLOs and --max-gpus",
    "over-max-gpus": "meets the SLOs, but the target rate needs more than --max-gpus",
    "no-capacity": "misses the SLOs even at 1/1000 of its throughput bound",
    "pruned-cost": "not simulated: its lower-bound cost cannot beat the winner",
    "pruned-gpus": "not simulated: more than --max-gpus even at its throughput bound",
    "pruned-slo": "not simulated: even unloaded, too few requests can meet the SLOs",
    "no-fit": "the model does not fit in memory (or the KV cache cannot hold max_model_len)",
    "unsupported": "the GPU cannot run this configuration (e.g. FP8 without FP8 tensor cores)",
    "interrupted": "not finished: the search was interrupted",
}


@dataclass
class PlanRequest:
    base: RunConfig  # model, workload, engine settings, seed, SLOs (slo_ttft / slo_tpot)
    qps: float
    space: SearchSpace
    prices: Prices
    attainment: float = 0.9
    max_gpus: int = 64
    probe_requests: int = 400  # at least this many requests per capacity probe
    probe_seconds: float = 60.0  # and enough to span this many seconds of arrivals
    verify_requests: int = 2000  # the winner's verification: at least this many requests
    verify_seconds: float = 300.0  # spanning this many seconds
    tolerance: float = 0.05
    window: int = 8
    top: int = 5
    exhaustive: bool = False

    @property
    def slo(self) -> SLO:
        return SLO(self.base.slo_ttft, self.base.slo_tpot)

    def settings(self) -> dict:
        return {"qps": self.qps, "slo_ttft_s": self.base.slo_ttft, "slo_tpot_s": self.base.slo_tpot,
                "attainment": self.attainment, "max_gpus": self.max_gpus, "probe_requests": self.probe_requests,
                "probe_seconds": self.probe_seconds, "verify_requests": self.verify_requests,
                "verify_seconds": self.verify_seconds, "sample_requests": SAMPLE_REQUESTS, "tolerance": self.tolerance, "window": self.window,
                "top": self.top, "exhaustive": self.exhaustive, "space": self.space.as_dict()}


@dataclass
class Point:
    """One candidate and everything the search learnt about it."""

    candidate: Candidate | DisaggCandidate
    config: RunConfig
    replica_price: float  # dollars per hour for one replica (one xPyD unit)
    assessment: Assessment
    status: str = "pending"
    reason: str = ""
    lb_replicas: int | None = None
    capacity: Capacity | None = None
    probes: dict[float, Probe] = field(default_factory=dict)
    replicas: int | None = None
    operating: Probe | None = None  # the whole deployment at the target rate, probe sample
    verification: Probe | None = None  # winner only: the whole deployment at the target rate, larger sample
    simulated_replicas: int | None = None  # replicas the operating and verification runs simulated
    key: str = ""  # results-cache key of (config, probe sample, version)

    @property
    def id(self) -> str:
        return self.candidate.id

    @property
    def gpus(self) -> int | None:
        return None if self.replicas is None else self.replicas * self.candidate.gpus_per_replica

    @property
    def price(self) -> float:
        """Dollars per GPU hour (the mean over the unit's GPUs when its pools use different types)."""
        return self.replica_price / self.candidate.gpus_per_replica

    @property
    def cost_per_hour(self) -> float | None:
        return None if self.replicas is None else self.replicas * self.replica_price

    def rank_key(self) -> tuple:
        return (self.cost_per_hour, -self.replicas * self.capacity.rate, self.id)

    def bound_key(self) -> tuple:
        """No better than this rank key is possible for the candidate."""
        return (self.lb_replicas * self.replica_price,
                -self.lb_replicas * self.assessment.ub_rps, self.id)

    @property
    def capacity_probe(self) -> Probe | None:
        return self.probes.get(self.capacity.rate) if self.capacity and self.capacity.rate else None


@dataclass
class PlanResult:
    request: PlanRequest
    model: dict
    workload: dict
    max_model_len: int
    points: list[Point]
    ranked: list[Point]
    interrupted: bool = False
    left_out: int = 0  # disaggregated units not listed: one of their pools does not fit

    @property
    def winner(self) -> Point | None:
        return self.ranked[0] if self.ranked else None


def replicas_needed(qps: float, capacity: float) -> int:
    return max(1, math.ceil(qps / capacity * (1 - 1e-12)))


def _sample(req: PlanRequest) -> Workload:
    """One long sample at 1 request/s; a probe at rate r takes its first requests and compresses them in time,
    so every probe of every candidate sees the same requests."""
    base = req.base
    if base.concurrency is not None:
        raise ServesimError("plan searches request rates: describe the traffic as an open loop (--qps with a "
                            "--workload, --trace or --isl/--osl), not --concurrency")
    n = max(SAMPLE_REQUESTS, req.probe_requests, req.verify_requests)
    cfg = replace(base, qps=1.0, requests=n, duration=None)
    if base.trace:
        cfg = replace(cfg, limit=n if base.limit is None else min(base.limit, n))
    return build_workload(cfg)


def _check(req: PlanRequest) -> None:
    if not req.qps > 0:
        raise ServesimError(f"--qps must be > 0 req/s, got {req.qps}")
    if req.base.slo_ttft is None:
        raise ServesimError("plan needs --slo-ttft: without a TTFT bound an overloaded replica only queues longer, "
                            "and no finite run tells its capacity (give a loose one, e.g. 30s, if you only care about TPOT)")
    if not 0 < req.attainment <= 1:
        raise ServesimError(f"--attainment must be in (0, 1] (e.g. 0.9 for 90%), got {req.attainment}")
    if req.max_gpus < 1:
        raise ServesimError(f"--max-gpus must be >= 1, got {req.max_gpus}")
    if req.probe_requests < 20:
        raise ServesimError(f"--probe-requests must be >= 20, got {req.probe_requests}")
    if req.verify_requests < 1:
        raise ServesimError(f"--verify-requests must be >= 1, got {req.verify_requests}")
    if req.probe_seconds < 0 or req.verify_seconds < 0:
        raise ServesimError("--probe-seconds and --verify-seconds must be >= 0")
    if not 0 < req.tolerance < 1:
        raise ServesimError(f"--tolerance must be in (0, 1), got {req.tolerance}")
    if req.window < 1:
        raise ServesimError(f"--window must be >= 1, got {req.window}")
    # policy, router and KV link names are checked before any work (the cluster settings are the planner's)
    cluster_pools(replace(req.base, replicas=1, prefill_pool=None, decode_pool=None))
    req.space.check()


def _no_fit_error(model_name: str, dtype_list, max_model_len: int, points: list[Point]) -> ServesimError:
    best: dict[str, Point] = {}
    colocated = [p for p in points if p.candidate.mode == "colocated"] or points
    for p in colocated:  # per GPU type, the configuration with the most GPUs per replica says the most
        if p.candidate.gpu not in best or p.candidate.gpus_per_replica > best[p.candidate.gpu].candidate.gpus_per_replica:
            best[p.candidate.gpu] = p
    detail = "; ".join(f"{g} {_shape(p.candidate)}: {p.assessment.reason}" for g, p in sorted(best.items()))
    return ServesimError(f"no GPU type fits {model_name} ({'/'.join(dtype_list)}, max_model_len {max_model_len}) at any "
                         f"TP tried: {detail}")


def _shape(c) -> str:
    if c.mode == "colocated":
        return f"TP={c.tp}"
    return f"{c.prefill.count}P TP={c.prefill.tp} + {c.decode.count}D TP={c.decode.tp}"


def replica_price(candidate, prices: Prices) -> float:
    return sum(n * prices.price(gpu) for gpu, n in sorted(candidate.gpu_counts().items()))


def plan(req: PlanRequest, executor, cache: ResultCache | None = None,
         progress: Callable[[int, int], None] | None = None) -> PlanResult:
    _check(req)
    cache = cache or ResultCache(None)
    model = resolve_model(req.base)
    sample = _sample(req)
    probe_sample = prefix(sample, req.probe_requests)  # what the bounds are computed on
    length = ProbeLength(req.probe_requests, req.probe_seconds, len(sample))
    longest = int((sample.prompt_len + sample.output_len).max())
    max_model_len = req.base.max_model_len or min(model.max_position_embeddings, -(-longest // 1024) * 1024)
    base = replace(req.base, max_model_len=max_model_len, qps=None, requests=None, duration=None)
    for gpu in req.space.gpus:
        req.prices.price(get_device(gpu).name)  # a missing price is an error before any work
    sample_fp = workload_fingerprint(sample)

    points = []
    assessor = Assessor(probe_sample)
    for cand in req.space.candidates(model):
        cfg = cand.run_config(base)
        points.append(Point(cand, cfg, replica_price(cand, req.prices), assessor.assess(cfg)))
    for p in points:
        if p.assessment.status != "ok":
            p.status, p.reason = p.assessment.status, p.assessment.reason
    if all(p.status in ("no-fit", "unsupported") for p in points):
        if any(p.status == "no-fit" for p in points):
            raise _no_fit_error(model.name, req.space.dtype, max_model_len, [p for p in points if p.status == "no-fit"])
        raise ServesimError(points[0].reason)
    # A unit with a pool that does not fit says nothing new: that replica configuration is listed (or, with
    # --disagg only, would be) as a co-located candidate with the memory numbers.
    listed = [p for p in points if p.candidate.mode == "colocated" or p.status != "no-fit"]
    left_out, points = len(points) - len(listed), listed

    slo, criterion = req.slo, Criterion(req.slo, req.attainment)
    for p in points:
        if p.status != "pending":
            continue
        a = p.assessment
        p.lb_replicas = replicas_needed(req.qps, a.ub_rps)
        bound = a.attainment_bound(slo)
        if p.candidate.gpus_per_replica > req.max_gpus:
            p.status, p.reason = "pruned-gpus", f"{p.candidate.gpus_per_replica} GPUs per replica > --max-gpus {req.max_gpus}"
        elif req.exhaustive:
            continue
        elif bound < req.attainment:
            p.status = "pruned-slo"
            floors = a.summary()
            tpot = floors["tpot_floor_p90_s"]
            p.reason = (f"unloaded, at most {bound:.0%} of requests meet the SLOs (target {req.attainment:.0%}): "
                        f"p90 TTFT floor {floors['ttft_floor_p90_s'] * 1e3:.0f} ms"
                        + ("" if tpot is None else f", p90 TPOT floor {tpot * 1e3:.1f} ms"))
        elif p.lb_replicas * p.candidate.gpus_per_replica > req.max_gpus:
            p.status = "pruned-gpus"
            p.reason = (f"needs >= {p.lb_replicas * p.candidate.gpus_per_replica} GPUs at its throughput bound "
                        f"({a.ub_rps:.2f} req/s per replica) > --max-gpus {req.max_gpus}")

    queue = sorted((p for p in points if p.status == "pending"), key=Point.bound_key)
    interrupted = False
    try:
        _search(req, queue, criterion, sample, sample_fp, length, executor, cache, progress)
    except KeyboardInterrupt:
        interrupted = True
        executor.terminate()
    for p in queue:
        if p.status == "pending":
            p.status, p.reason = "interrupted", STATUSES["interrupted"]

    ranked = sorted((p for p in points if p.status == RANKED), key=Point.rank_key)
    if ranked and not interrupted:
        try:
            _operating_points(req, base, ranked, sample, sample_fp, length, executor, cache)
        except KeyboardInterrupt:
            interrupted = True
            executor.terminate()
    workload = {k: v for k, v in sample.describe().items() if k not in ("duration_s", "rate_req_s", "qps")}
    model_info = {"name": model.name, "hf_id": model.hf_id, "params": model.num_params}
    return PlanResult(req, model_info, workload, max_model_len, points, ranked, interrupted, left_out)


def _finish(req: PlanRequest, p: Point, result: TaskResult) -> None:
    p.capacity, p.probes = result.capacity, result.probes
    cap = p.capacity.rate
    if cap <= 0:
        p.status = "no-capacity"
        p.reason = f"misses the SLO attainment target even at {p.capacity.failed_rate:.3g} req/s"
        return
    p.replicas = replicas_needed(req.qps, cap)
    if p.gpus > req.max_gpus:
        p.status = "over-max-gpus"
        p.reason = f"{p.replicas} replicas x {p.candidate.gpus_per_replica} GPUs = {p.gpus} > --max-gpus {req.max_gpus}"
    else:
        p.status = RANKED


def _search(req, queue: list[Point], criterion, sample, sample_fp, length, executor, cache, progress) -> None:
    settled = 0  # positions < settled are finished (or pruned) and count for the incumbent
    best: Point | None = None
    inflight = 0
    finished = 0

    def receive() -> None:
        nonlocal inflight, finished
        i, result = executor.next_done()
        inflight -= 1
        finished += 1
        p = queue[i]
        cache.put(p.key, result.new)
        _finish(req, p, result)
        report()

    def report() -> None:
        if progress:
            progress(finished, finished + sum(1 for q in queue if q.status == "pending"))

    for i, p in enumerate(queue):
        p.key = config_key(p.config, sample_fp, length)
        while settled <= i - req.window:
            if queue[settled].status == "pending":
                receive()
                continue
            q = queue[settled]
            if q.status == RANKED and (best is None or q.rank_key() < best.rank_key()):
                best = q
            settled += 1
        if best is not None and not req.exhaustive and p.bound_key() > best.rank_key():
            p.status = "pruned-cost"
            p.reason = (f"costs at least ${p.bound_key()[0]:.2f}/h at its throughput bound; "
                        f"{best.id} costs ${best.cost_per_hour:.2f}/h")
            report()
            continue
        most = length.requests(p.assessment.ub_rps)  # the search never probes above the bound
        executor.submit(i, Task(p.key, p.config, prefix(sample, most), length, p.assessment.ub_rps, criterion,
                                req.tolerance, cached=cache.get(p.key)))
        inflight += 1
    while inflight:
        receive()


def _deployment_config(base: RunConfig, p: Point) -> tuple[RunConfig, int]:
    """The whole deployment as one cluster: all replicas (units pooled) behind the router. Pooled units that
    span more nodes move KV over the network; where the GPUs have none, one unit at target/replicas stands in."""
    cfg = p.candidate.cluster_config(base, p.replicas)
    if p.candidate.mode == "disaggregated" and p.replicas > 1:
        try:
            ppool, dpool = cluster_pools(cfg)
            kv_link(cfg.kv_link, get_device(ppool.gpu), get_device(dpool.gpu), ppool.gpus + dpool.gpus)
        except ServesimError:
            return p.config, 1
    return cfg, p.replicas


def _operating_points(req, base: RunConfig, ranked: list[Point], sample, sample_fp, length, executor, cache) -> None:
    """The best few as whole deployments at the target rate on the probes' sample, and the winner on a longer
    run: N replicas behind the router rather than the capacity search's one replica at target/N."""
    verify = ProbeLength(req.verify_requests, req.verify_seconds, len(sample))
    jobs: dict = {}
    for j, p in enumerate(ranked[: max(1, req.top)]):
        cfg, p.simulated_replicas = _deployment_config(base, p)
        rate = req.qps if p.simulated_replicas > 1 else req.qps / p.replicas
        jobs[("op", j)] = (p, cfg, config_key(cfg, sample_fp, length), length, rate)
        if j == 0:
            jobs[("verify", 0)] = (p, cfg, config_key(cfg, sample_fp, verify), verify, rate)
    for token, (p, cfg, key, rule, rate) in jobs.items():
        executor.submit(token, Task(key, cfg, prefix(sample, rule.requests(rate)), rule, rates=(rate,),
                                    cached=cache.get(key)))
    for _ in range(len(jobs)):
        token, result = executor.next_done()
        p, _, key, _, rate = jobs[token]
        cache.put(key, result.new)
        if token[0] == "op":
            p.operating = result.probes[rate]
        else:
            p.verification = result.probes[rate]
