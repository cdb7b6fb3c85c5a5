import math
import os
from pathlib import Path

import numpy as np
import pytest

from servesim.engine.config import EngineConfig
from servesim.engine.engine import ReplicaEngine
from servesim.engine.policies import make_policy
from servesim.engine.requests import RequestTable

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    """`make test-compiled` sets SERVESIM_REQUIRE_COMPILED: the suite must then run the compiled core, not skip it."""
    if os.environ.get("SERVESIM_REQUIRE_COMPILED") == "1":
        from servesim.compiled import MODULES, is_compiled

        python = [m for m in MODULES if not is_compiled(m)]
        if python:
            raise pytest.UsageError(f"SERVESIM_REQUIRE_COMPILED=1 but {', '.join(python)} run from source: "
                                    "`make compile` first")


class UnitCost:
    """Every step takes one second: schedules are compared step by step, times are step counts."""

    def step_time(self, shape):
        return 1.0

    def decode_span(self, num_seqs, kv_tokens, steps):
        return np.ones(steps)


def make_engine(prompts, outputs, prefix_ids=None, prefix_block_tokens=512, cost=None, policy="vllm-v1",
                use_spans=True, log_schedule=False, priority=None, client=None, **engine):
    defaults = dict(num_gpu_blocks=1000, block_size=16, max_num_batched_tokens=2048, max_num_seqs=256,
                    max_model_len=8192)
    defaults.update(engine)
    table = RequestTable(prompts, outputs, prefix_ids, prefix_block_tokens, priority=priority, client=client)
    return ReplicaEngine(EngineConfig(**defaults), cost or UnitCost(), make_policy(policy), table,
                         use_spans=use_spans, log_schedule=log_schedule)


def run_all_at_once(eng, now=0.0):
    """Add every request before the first step (as vLLM's LLM.generate does), run to completion."""
    for rid in range(eng.req.n):
        eng.add(rid, now)
    t = now
    while eng.busy:
        t = eng.step(t)
    return t


def shared_data(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (tests read ../shared/data)")
    return path
