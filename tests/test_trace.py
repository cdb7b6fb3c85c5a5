"""`servesim trace`: valid Chrome trace-event JSON whose step slices add up to the engine's busy time."""

import json
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from servesim.cli import app
from servesim.report.runs import load_run
from servesim.report.trace import build_trace, group_starts, write_trace

PHASES = {"X", "b", "e", "s", "t", "f", "C", "M"}

pytest_plugins = ["report_fixtures"]  # run_dirs, copy_run


def check_chrome_trace(trace: dict) -> dict:
    """Assert the trace-event format's rules (the JSON Object Format); return the events by phase."""
    assert isinstance(trace["traceEvents"], list) and trace["displayTimeUnit"] in ("ms", "ns")
    by_ph = defaultdict(list)
    for ev in trace["traceEvents"]:
        assert ev["ph"] in PHASES, ev
        assert isinstance(ev["name"], str) and isinstance(ev["pid"], int)
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0, ev
        by_ph[ev["ph"]].append(ev)
    for ev in by_ph["M"]:
        assert ev["name"] in ("process_name", "thread_name", "process_sort_index") and ev["args"]
    for ev in by_ph["X"]:
        assert isinstance(ev["tid"], int) and ev["dur"] >= 0
    for ev in by_ph["C"]:
        assert ev["args"] and all(isinstance(v, (int, float)) for v in ev["args"].values())
    # slices on one thread never overlap
    threads = defaultdict(list)
    for ev in by_ph["X"]:
        threads[ev["pid"], ev["tid"]].append((ev["ts"], ev["ts"] + ev["dur"]))
    threads = {key: np.array(sorted(spans)) for key, spans in threads.items()}
    for spans in threads.values():
        assert np.all(spans[1:, 0] >= spans[:-1, 1] - 1e-6)
    # async slices: every begin has its end, properly nested, never ending before it began
    stacks = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev["ph"] == "b":
            stacks[ev["pid"], ev["cat"], ev["id"]].append(ev)
        elif ev["ph"] == "e":
            opened = stacks[ev["pid"], ev["cat"], ev["id"]].pop()
            assert opened["name"] == ev["name"] and opened["ts"] <= ev["ts"]
            outer = stacks[ev["pid"], ev["cat"], ev["id"]]
            assert not outer or outer[-1]["ts"] <= opened["ts"]
    assert not any(stacks.values())
    # flows: s, then t, then f, each inside a slice of the thread it binds to
    flows = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev["ph"] in "stf":
            flows[ev["id"]].append(ev)
    for points in flows.values():
        assert [p["ph"] for p in points][0] == "s" and points[-1]["ph"] == "f" and points[-1]["bp"] == "e"
        assert all(a["ts"] <= b["ts"] for a, b in zip(points, points[1:]))
        for p in points:
            spans = threads[p["pid"], p["tid"]]
            i = np.searchsorted(spans[:, 0], p["ts"], side="right") - 1
            assert i >= 0 and spans[i, 0] <= p["ts"] <= spans[i, 1]
    return by_ph


def step_slices(trace):
    return [ev for ev in trace["traceEvents"] if ev.get("cat") == "step"]


def test_one_slice_per_step_with_its_batch(run_dirs):
    run = load_run(run_dirs["heavy"])
    trace = build_trace(run, max_step_slices=10**6, max_requests=10**6)
    check_chrome_trace(json.loads(json.dumps(trace)))
    slices = step_slices(trace)
    steps = run.steps
    assert len(slices) == len(steps["start"])
    busy_us = run.summary["engine"]["busy_s"] * 1e6
    assert abs(sum(s["dur"] for s in slices) - busy_us) <= 1e-3 * len(slices)
    assert [s["args"]["prefill_tokens"] for s in slices] == steps["prefill_tokens"].tolist()
    assert [s["args"]["batch_size"] for s in slices] == steps["num_seqs"].tolist()
    assert sum(s["args"].get("preempted", 0) for s in slices) == run.summary["requests"]["preemptions"] > 0
    names = {s["name"] for s in slices}
    assert names == {"prefill", "decode", "mixed"}
    # every completed request drawn, with its flow
    done = int(run.requests["completed"].sum())
    assert trace["metadata"]["requests_drawn"] == done
    assert sum(1 for ev in trace["traceEvents"] if ev["ph"] == "s") == done


@pytest.mark.parametrize("limit", [1, 37, 500])
def test_long_runs_are_merged_and_still_add_up(run_dirs, limit):
    run = load_run(run_dirs["heavy"])
    trace = build_trace(run, max_step_slices=limit, max_requests=40)
    check_chrome_trace(json.loads(json.dumps(trace)))
    slices = step_slices(trace)
    assert len(slices) <= limit
    assert abs(sum(s["dur"] for s in slices) - run.summary["engine"]["busy_s"] * 1e6) <= 1e-3 * len(slices)
    total = sum(s["args"]["prefill_tokens"] + s["args"]["decode_tokens"] for s in slices)
    assert total == int(run.steps["num_tokens"].sum())
    assert sum(s["args"].get("steps", 1) for s in slices) == len(run.steps["start"])
    drawn = {ev["args"]["request"] for ev in trace["traceEvents"] if ev["ph"] == "b" and "args" in ev
             and "request" in ev["args"]}
    assert len(drawn) == 40
    slowest = np.argsort(-np.nan_to_num(run.requests["e2e_s"], nan=-1), kind="stable")[:20]
    assert set(slowest.tolist()) <= drawn


@given(st.lists(st.tuples(st.floats(1e-4, 1.0), st.booleans()), min_size=1, max_size=300), st.integers(1, 80))
@settings(max_examples=80, deadline=None)
def test_groups_cover_every_step_and_respect_idle_gaps(steps, limit):
    duration = np.array([d for d, _ in steps])
    idle_before = np.array([1.0 if gap else 0.0 for _, gap in steps])
    start = np.cumsum(idle_before + np.concatenate([[0.0], duration[:-1]]))
    first = group_starts(start, duration, limit)
    assert first[0] == 0 and np.all(np.diff(first) > 0) and first[-1] < len(steps)
    assert len(first) <= max(limit, 1)
    gaps = int(idle_before[1:].sum())
    if gaps < limit:  # budget allows: no slice swallows an idle gap
        assert set(np.flatnonzero(idle_before[1:]) + 1) <= set(first.tolist())


def test_measured_run_has_requests_only(measured_run):
    trace = build_trace(load_run(measured_run))
    by_ph = check_chrome_trace(trace)
    assert not by_ph["X"] and not by_ph["s"] and by_ph["b"]
    assert trace["metadata"]["kind"] == "measured"
    names = {ev["name"] for ev in by_ph["b"]}
    assert "waiting for first token" in names and "queued" not in names  # no queueing time from a client
    assert not any("preemptions" in ev.get("args", {}) for ev in by_ph["b"])  # -1 means unknown


def test_cli_trace(run_dirs, tmp_path):
    out = tmp_path / "t.json"
    result = CliRunner().invoke(app, ["trace", str(run_dirs["light"]), "-o", str(out), "--json",
                                      "--max-step-slices", "300"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["step_slices"] <= 300 < meta["steps"]
    check_chrome_trace(json.loads(out.read_text()))
    bad = CliRunner().invoke(app, ["trace", str(run_dirs["light"]), "--max-requests", "0"])
    assert bad.exit_code == 2 and "--max-requests 0 must be at least 1" in bad.output


def test_written_file_is_compact_json(run_dirs, tmp_path):
    meta = write_trace(run_dirs["light"], tmp_path / "t.json", max_step_slices=200, max_requests=30)
    text = (tmp_path / "t.json").read_text()
    assert json.loads(text)["metadata"] == meta and "\n" not in text


def test_one_process_per_replica(copy_run):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run_dir = copy_run("heavy")
    for name in ("steps", "requests"):
        table = pq.read_table(run_dir / f"{name}.parquet")
        table = table.drop_columns([c for c in ("replica",) if c in table.column_names])  # simulate writes one
        replica = pa.array([i % 2 for i in range(table.num_rows)], type=pa.int64())
        pq.write_table(table.append_column("replica", replica), run_dir / f"{name}.parquet")
    run = load_run(run_dir)
    trace = build_trace(run, max_step_slices=400, max_requests=60)
    check_chrome_trace(json.loads(json.dumps(trace)))
    names = {ev["pid"]: ev["args"]["name"] for ev in trace["traceEvents"] if ev["name"] == "process_name"}
    assert sorted(names.values()) == ["replica 0", "replica 1"]
    for pid, name in names.items():
        replica = int(name.split()[1])
        busy = run.steps["duration"][run.steps["replica"] == replica].sum() * 1e6
        slices = [s for s in step_slices(trace) if s["pid"] == pid]
        assert abs(sum(s["dur"] for s in slices) - busy) <= 1e-3 * len(slices)
        requests = {ev["args"]["request"] for ev in trace["traceEvents"]
                    if ev["ph"] == "b" and ev["pid"] == pid and "request" in ev.get("args", {})}
        assert requests and all(r % 2 == replica for r in requests)
