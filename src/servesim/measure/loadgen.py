"""Drive a real server with a servesim workload: closed loop (N clients) or open loop (the workload's arrival times).

The same Workload object the simulator runs, so a measured run and its simulation see the same requests in the
same order: closed loop hands request i to whichever client is free next, as the simulator's driver does.
Prompts are token ids drawn from (seed, salt): exact prompt lengths, and no prefix shared with any other
request, in this run or another (the salt differs per run unless given).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import numpy as np

from servesim.measure.client import Endpoint, Outcome, completion_body, stream_completion
from servesim.workload.workload import Workload

FIRST_ID = 10  # clear of special tokens at the start of most vocabularies


def salted_prompts(lengths: np.ndarray, vocab_size: int, seed: int, salt: int) -> list[list[int]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, salt]))
    return [rng.integers(FIRST_ID, vocab_size, int(n)).tolist() for n in lengths]


async def _closed_loop(ep, bodies, concurrency, think, timeout, progress) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(bodies)
    next_id = 0

    async def client():
        nonlocal next_id
        while next_id < len(bodies):
            rid = next_id
            next_id += 1
            outcomes[rid] = await stream_completion(ep, bodies[rid], timeout)
            progress(1)
            if think > 0:
                await asyncio.sleep(think)

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(bodies)))))
    return outcomes


async def _open_loop(ep, bodies, arrivals, started, timeout, progress) -> list[Outcome]:
    async def one(rid):
        delay = started + arrivals[rid] - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        outcome = await stream_completion(ep, bodies[rid], timeout)
        progress(1)
        return outcome

    return list(await asyncio.gather(*(one(rid) for rid in range(len(bodies)))))


def run_load(url: str, model: str, workload: Workload, prompts: list[list[int]], timeout: float = 600.0,
             progress: Callable[[int], None] = lambda n: None) -> tuple[list[Outcome], float]:
    """Send every request; return the outcomes (in request order) and the perf_counter time the run began."""
    ep = Endpoint.parse(url)
    bodies = [completion_body(model, p, int(o)) for p, o in zip(prompts, workload.output_len)]

    async def main():
        started = time.perf_counter()
        if workload.closed_loop:
            outcomes = await _closed_loop(ep, bodies, workload.concurrency, workload.think_time, timeout, progress)
        else:
            outcomes = await _open_loop(ep, bodies, workload.arrival.tolist(), started, timeout, progress)
        return outcomes, started

    return asyncio.run(main())
