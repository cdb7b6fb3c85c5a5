"""`servesim trace`: a run as Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) or chrome://tracing.

One process per replica. Its "engine steps" thread has one slice per step, named by what the step did
(prefill, decode or mixed) with the batch composition in its args; counters track running and waiting
requests and KV-cache usage. Each drawn request is an async slice (queued, prefill, decode nested inside)
plus a flow arrow from the step that first scheduled it to the steps of its first and last token.

Bounded size. A run with more steps than --max-step-slices merges runs of k consecutive steps into one
slice (k the smallest power of two that fits; merged slices never span an idle gap while the budget allows,
and their duration is the sum of their steps', so slices always add up to the engine's busy time). Counters
then show the peak within each slice. A run with more requests than --max-requests draws half of them as
the slowest by E2E latency and the rest spread evenly over the run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from servesim import __version__
from servesim.report.runs import Run, load_run

MAX_STEP_SLICES = 20_000
MAX_REQUESTS = 2_000
STEPS_TID = 1
US = 1e6


def _us(seconds: float) -> float:
    return round(float(seconds) * US, 3)


def group_starts(start: np.ndarray, duration: np.ndarray, max_slices: int) -> np.ndarray:
    """First step index of each slice: every step alone if they fit, else runs of k steps split at idle gaps."""
    n = len(start)
    if n <= max_slices:
        return np.arange(n)
    end = start + duration
    gap = np.flatnonzero(start[1:] > end[:-1] + 1e-9) + 1
    seg_start = np.concatenate([[0], gap])
    seg_len = np.diff(np.append(seg_start, n))
    if len(seg_start) > max_slices:  # more idle gaps than slices: merge across them
        return np.arange(0, n, math.ceil(n / max_slices))
    k = 1 << max(0, math.ceil(math.log2(n / max_slices)))
    while True:
        counts = -(-seg_len // k)
        if counts.sum() <= max_slices:
            break
        k *= 2
    first = np.repeat(seg_start, counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return first + within * k


@dataclass
class StepSlices:
    first: np.ndarray  # index of each slice's first step
    ts: np.ndarray  # seconds
    dur: np.ndarray  # seconds: the sum of the slice's step durations

    def containing(self, t: np.ndarray, at_end: bool) -> np.ndarray:
        """Slice holding each time; a time that is a step's end belongs to that step, not the next."""
        probe = t - 1e-9 if at_end else t + 1e-9  # round-off must not move a boundary time into a neighbour
        return np.clip(np.searchsorted(self.ts, probe, side="right") - 1, 0, len(self.ts) - 1)

    def middle(self, index: np.ndarray) -> np.ndarray:
        return self.ts[index] + self.dur[index] / 2


def _step_events(steps: dict[str, np.ndarray], pid: int, max_slices: int) -> tuple[list[dict], StepSlices]:
    first = group_starts(steps["start"], steps["duration"], max_slices)
    sums = {key: np.add.reduceat(steps[key], first) for key in ("duration", "prefill_tokens", "decode_tokens")}
    if "preempted" in steps:
        sums["preempted"] = np.add.reduceat(steps["preempted"], first)
    peaks = {key: np.maximum.reduceat(steps[key], first) for key in ("num_seqs", "running", "waiting", "kv_usage")}
    size = np.diff(np.append(first, len(steps["start"])))
    ts = steps["start"][first]
    slices = StepSlices(first, ts, sums["duration"])
    events = []
    for g in range(len(first)):
        pre, dec = int(sums["prefill_tokens"][g]), int(sums["decode_tokens"][g])
        name = "mixed" if pre and dec else ("prefill" if pre else "decode")
        args = {"step": int(first[g]), "prefill_tokens": pre, "decode_tokens": dec,
                "batch_size": int(peaks["num_seqs"][g]), "running": int(peaks["running"][g]),
                "waiting": int(peaks["waiting"][g]), "kv_usage_pct": round(float(peaks["kv_usage"][g]) * 100, 2)}
        if size[g] > 1:
            args = {"steps": int(size[g]), "first_step": int(first[g]), "prefill_tokens": pre, "decode_tokens": dec,
                    "peak_batch_size": args["batch_size"], "peak_running": args["running"],
                    "peak_waiting": args["waiting"], "peak_kv_usage_pct": args["kv_usage_pct"]}
        if "preempted" in sums and sums["preempted"][g]:
            args["preempted"] = int(sums["preempted"][g])
        t = _us(ts[g])
        dur = round(_us(ts[g] + sums["duration"][g]) - t, 3)  # rounded ends, so neighbours never overlap
        events.append({"name": name, "cat": "step", "ph": "X", "pid": pid, "tid": STEPS_TID, "ts": t,
                       "dur": dur, "args": args})
        events.append({"name": "requests", "ph": "C", "pid": pid, "ts": t,
                       "args": {"running": int(peaks["running"][g]), "waiting": int(peaks["waiting"][g])}})
        events.append({"name": "KV cache usage %", "ph": "C", "pid": pid, "ts": t,
                       "args": {"usage": round(float(peaks["kv_usage"][g]) * 100, 2)}})
    return events, slices


def drawn_requests(run: Run, max_requests: int) -> np.ndarray:
    """Completed requests to draw: all, or the slowest half by E2E plus an even spread of the rest."""
    done = np.flatnonzero(run.requests["completed"])
    if len(done) <= max_requests:
        return done
    slow_count = max_requests // 2
    e2e = run.requests["e2e_s"][done]
    order = np.lexsort((done, -e2e))
    slow = done[order[:slow_count]]
    rest = np.setdiff1d(done, slow)
    spread = rest[np.linspace(0, len(rest) - 1, max_requests - slow_count).round().astype(np.int64)]
    return np.union1d(slow, spread)


def _request_args(req: dict[str, np.ndarray], rid: int) -> dict:
    args = {"request": rid, "output_tokens": int(req["output_tokens"][rid]),
            "ttft_ms": round(float(req["ttft_s"][rid]) * 1e3, 3), "e2e_ms": round(float(req["e2e_s"][rid]) * 1e3, 3)}
    if not np.isnan(req["tpot_s"][rid]):
        args["tpot_ms"] = round(float(req["tpot_s"][rid]) * 1e3, 3)
    if "preemptions" in req and req["preemptions"][rid] > 0:  # a measured run writes -1: unknown
        args["preemptions"] = int(req["preemptions"][rid])
    return args


def _request_events(run: Run, rid: int, pid: int, slices: StepSlices | None) -> list[dict]:
    """One request: an async slice with its phases nested inside, and a flow through the steps that served it."""
    req = run.requests
    arrival, first, finished = req["arrival_s"][rid], req["first_token_s"][rid], req["finished_s"][rid]
    queue = req["queue_s"][rid] if "queue_s" in req else np.nan
    scheduled = None if np.isnan(queue) else arrival + queue
    common = {"cat": "request", "id": hex(rid), "pid": pid}
    events = [{**common, "name": f"request {rid}", "ph": "b", "ts": _us(arrival), "args": _request_args(req, rid)}]
    phases = ((("queued", arrival, scheduled), ("prefill", scheduled, first)) if scheduled is not None
              else (("waiting for first token", arrival, first),))
    for name, a, b in (*phases, ("decode", first, finished)):
        if b > a:
            events.append({**common, "name": name, "ph": "b", "ts": _us(a)})
            events.append({**common, "name": name, "ph": "e", "ts": _us(b)})
    events.append({**common, "name": f"request {rid}", "ph": "e", "ts": _us(finished)})
    if slices is not None and scheduled is not None:
        points = slices.middle(np.concatenate([slices.containing(np.array([scheduled]), at_end=False),
                                               slices.containing(np.array([first, finished]), at_end=True)]))
        for ph, t in zip(("s", "t", "f"), points):
            flow = {"name": f"request {rid}", "cat": "flow", "ph": ph, "id": rid, "pid": pid, "tid": STEPS_TID,
                    "ts": _us(t)}
            if ph == "f":
                flow["bp"] = "e"  # bind to the slice around it, not the next one
            events.append(flow)
    return events


def build_trace(run: Run, max_step_slices: int = MAX_STEP_SLICES, max_requests: int = MAX_REQUESTS) -> dict:
    req = run.requests
    replica_of_request = req.get("replica")
    steps = run.steps
    replicas = sorted(set(np.unique(replica_of_request).tolist())) if replica_of_request is not None else [0]
    if steps is not None and "replica" in steps:
        replicas = sorted(set(replicas) | set(np.unique(steps["replica"]).tolist()))
    pid = {r: i + 1 for i, r in enumerate(replicas)}
    events: list[dict] = []
    slices: dict[int, StepSlices] = {}
    step_count = slice_count = 0
    for r in replicas:
        events.append({"name": "process_name", "ph": "M", "pid": pid[r], "args": {"name": f"replica {r}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid[r], "args": {"sort_index": pid[r]}})
        if steps is None:
            continue
        events.append({"name": "thread_name", "ph": "M", "pid": pid[r], "tid": STEPS_TID,
                       "args": {"name": "engine steps"}})
        mine = steps if "replica" not in steps else {k: v[steps["replica"] == r] for k, v in steps.items()}
        if not len(mine["start"]):
            continue
        budget = max(1, max_step_slices * len(mine["start"]) // len(steps["start"]))
        step_events, slices[r] = _step_events(mine, pid[r], budget)
        events += step_events
        step_count += len(mine["start"])
        slice_count += len(slices[r].first)
    rids = drawn_requests(run, max_requests)
    for rid in rids.tolist():
        replica = int(replica_of_request[rid]) if replica_of_request is not None else replicas[0]
        events += _request_events(run, rid, pid[replica], slices.get(replica))
    metadata = {
        "servesim_version": __version__, "run": run.name, "source": str(run.path),
        "written_by": run.doc.get("servesim_version"), "kind": run.kind,
        "steps": step_count, "step_slices": slice_count,
        "busy_s": float(steps["duration"].sum()) if steps is not None else None,
        "requests": int(len(req["arrival_s"])), "requests_drawn": int(len(rids)),
    }
    return {"traceEvents": events, "displayTimeUnit": "ms", "metadata": metadata}


WRITE_STAGES = 3  # progress calls write_trace makes: loaded, built, written


def write_trace(run_dir: str | Path, output: str | Path, max_step_slices: int = MAX_STEP_SLICES,
                max_requests: int = MAX_REQUESTS, progress: Callable[[], None] = lambda: None) -> dict:
    """Write the trace; return its metadata (what was drawn, how much was merged or left out)."""
    run = load_run(run_dir)
    progress()
    trace = build_trace(run, max_step_slices, max_requests)
    progress()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(trace, separators=(",", ":")))  # dumps, not dump: only dumps uses the C encoder
    progress()
    return trace["metadata"]
