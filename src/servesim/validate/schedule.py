"""Replay a scenario on servesim's engine and compare its schedule with a recorded vLLM trace, step by step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servesim.engine.engine import ReplicaEngine
from servesim.engine.policies import make_policy
from servesim.engine.requests import RequestTable
from servesim.validate.scenario import Scenario

Step = tuple[dict[str, int], list[str]]  # (request index -> tokens, preempted request indices), as in a trace


class StepClock:
    """Every step lasts one second, so the clock reads the number of steps taken."""

    def step_time(self, shape) -> float:
        return 1.0

    def decode_span(self, num_seqs: int, kv_tokens: int, steps: int) -> np.ndarray:
        return np.ones(steps)


def make_engine(sc: Scenario, use_spans: bool = True) -> ReplicaEngine:
    table = RequestTable(sc.prompt_len, sc.output_len, sc.prefix_ids(), prefix_block_tokens=sc.engine.block_size)
    return ReplicaEngine(sc.engine, StepClock(), make_policy("vllm-v1"), table, use_spans=use_spans,
                         log_schedule=True)


def replay(sc: Scenario, use_spans: bool = True) -> list[Step]:
    """The engine's schedule for the scenario. Requests with arrival_step s are added once s steps have run
    (all at once if the engine runs dry first), exactly as the recorder adds them to vLLM."""
    eng = make_engine(sc, use_spans)
    order = sorted(range(sc.n), key=lambda i: (sc.arrival_step[i], i))
    nxt = 0
    while nxt < len(order) or eng.busy:
        done = len(eng.schedule_log)
        if not eng.busy and sc.arrival_step[order[nxt]] > done:
            done = sc.arrival_step[order[nxt]]
        while nxt < len(order) and sc.arrival_step[order[nxt]] <= done:
            eng.add(order[nxt], float(len(eng.schedule_log)))
            nxt += 1
        horizon = float(sc.arrival_step[order[nxt]]) if nxt < len(order) else float("inf")
        eng.step(float(len(eng.schedule_log)), horizon)
    return [({str(r): n for r, n in tokens}, sorted((str(p) for p in pre), key=int))
            for tokens, pre in eng.schedule_log]


def trace_steps(trace: dict) -> list[Step]:
    return [({str(k): int(v) for k, v in s["tokens"].items()}, sorted((str(p) for p in s["preempted"]), key=int))
            for s in trace["steps"]]


@dataclass
class Mismatch:
    step: int  # first differing step
    sim: Step | None  # None: the schedule ended before this step
    real: Step | None


def first_mismatch(sim: list[Step], real: list[Step]) -> Mismatch | None:
    for i in range(max(len(sim), len(real))):
        a = sim[i] if i < len(sim) else None
        b = real[i] if i < len(real) else None
        if a != b:
            return Mismatch(i, a, b)
    return None


def describe_step(step: Step | None) -> str:
    if step is None:
        return "(no step: the run had ended)"
    tokens, preempted = step
    body = " ".join(f"{r}:{n}" for r, n in sorted(tokens.items(), key=lambda kv: int(kv[0]))) or "-"
    return body + (f"  preempted {','.join(preempted)}" if preempted else "")


def prefix_hit_tokens(trace: dict) -> int:
    """Tokens vLLM took from its prefix cache: the context a request already had when it was (re)admitted."""
    admitted: set[str] = set()
    hits = 0
    for s in trace["steps"]:
        admitted.difference_update(s["preempted"])
        for r, c in s.get("context", {}).items():
            if r not in admitted:
                admitted.add(r)
                hits += c
    return hits
