"""Measured outcomes into the simulator's result files: requests.parquet (same schema), summary.json, config.yaml.

What a client cannot observe is marked, never invented: queueing delay is NaN, preemptions -1, and cached
tokens -1 unless the server reports them. Inter-token latencies are the gaps between streamed events; a server
that packs several tokens into one event shows up as `events < tokens` in the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from servesim import __version__
from servesim.measure.client import Outcome
from servesim.metrics.compare import run_metrics
from servesim.metrics.io import _clean, requests_table

FINISH_CODES = {"length": 1, "stop": 1, "max_model_len": 2}
REJECTED = 3


def outcome_arrays(outcomes: list[Outcome], started: float, prompt_len: np.ndarray, output_len: np.ndarray):
    n = len(outcomes)
    nan = np.full(n, np.nan)
    reqs = {
        "arrival": np.array([o.sent - started for o in outcomes]),
        "prompt_len": np.array([o.prompt_tokens if o.prompt_tokens >= 0 else p for o, p in zip(outcomes, prompt_len)], dtype=np.int64),
        "output_len": np.array([max(o.completion_tokens, 0) for o in outcomes], dtype=np.int64),
        "max_tokens": np.asarray(output_len, dtype=np.int64),
        "first_scheduled": nan.copy(),
        "first_token": nan.copy(),
        "finished": nan.copy(),
        "preemptions": np.full(n, -1, dtype=np.int64),
        "cached_tokens": np.array([o.cached_tokens for o in outcomes], dtype=np.int64),
        "hit_tokens": np.full(n, -1, dtype=np.int64),
        "finish_reason": np.zeros(n, dtype=np.uint8),
    }
    gaps: list[np.ndarray] = []
    for i, o in enumerate(outcomes):
        if o.error or not o.events:
            reqs["finish_reason"][i] = REJECTED
            gaps.append(np.empty(0))
            continue
        reqs["first_token"][i] = o.events[0] - started
        reqs["finished"][i] = o.events[-1] - started
        reqs["finish_reason"][i] = FINISH_CODES.get(o.finish_reason, 1)
        gaps.append(np.diff(np.asarray(o.events)))
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in gaps])]).astype(np.int64)
    values = np.concatenate(gaps) if gaps else np.empty(0)
    return reqs, offsets, values


def write_measurement(out_dir: str | Path, outcomes: list[Outcome], started: float, prompt_len, output_len,
                      settings: dict, server: dict) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reqs, offsets, values = outcome_arrays(outcomes, started, prompt_len, output_len)
    table = requests_table(reqs, offsets, values)
    pq.write_table(table, out / "requests.parquet")
    errors = [o.error for o in outcomes if o.error]
    short = int(sum(1 for o, want in zip(outcomes, output_len) if not o.error and o.completion_tokens != want))
    events = int(sum(len(o.events) for o in outcomes if not o.error))
    tokens = int(sum(o.completion_tokens for o in outcomes if not o.error))
    summary = {
        "metrics": run_metrics(table),
        "requests": {"total": len(outcomes), "failed": len(errors), "first_error": errors[0] if errors else None,
                     "wrong_output_length": short},
        "stream": {"events": events, "tokens": tokens},
    }
    document = {"servesim_version": __version__, "seed": settings.get("seed"), "kind": "measured",
                "config": settings, "meta": {"server": server}, "summary": summary}
    (out / "summary.json").write_text(json.dumps(_clean(document), indent=1, sort_keys=True) + "\n")
    (out / "config.yaml").write_text(yaml.safe_dump(_clean(settings), sort_keys=True))
    return summary
