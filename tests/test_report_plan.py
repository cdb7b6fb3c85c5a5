"""`servesim report` on planner outputs: the winner, honest Pareto frontiers, the top candidates' curves, sweeps."""

import json

import pyarrow.parquet as pq
import pytest

from servesim.errors import ServesimError
from servesim.report.build import build_report

pytest_plugins = ["plan_fixtures", "report_fixtures"]  # planner_dirs, run_dirs


def chart(report, prefix):
    return next(s.chart for s in report.sections if s.chart is not None and s.id.startswith(prefix))


def dominated(point, others, better):
    """True if some other point is at least as good on both axes and strictly better on one."""
    return any(all(better[k](o[k], point[k]) or o[k] == point[k] for k in better)
               and any(better[k](o[k], point[k]) for k in better) for o in others)


def test_plan_report_charts(planner_dirs):
    report = build_report([planner_dirs["plan"]])
    doc = json.loads((planner_dirs["plan"] / "plan.json").read_text())
    probes = pq.read_table(planner_dirs["plan"] / "probes.parquet").to_pylist()
    feasible = [p for p in probes if p["passed"] and p["gpus_for_target"] <= doc["request"]["max_gpus"]]
    ranked = [c for c in doc["candidates"] if c["rank"] is not None]
    assert doc["winner"] and len(ranked) >= 2
    traces = report.chart_traces()
    assert traces["plan-cost-frontier-0"] == len({p["gpu"] for p in feasible}) + 2  # GPUs, frontier, winner
    assert traces["plan-speed-frontier-0"] == len({p["gpu"] for p in probes}) + 1
    assert traces["plan-curves-0"] == 2 * min(5, len(ranked))
    winner = next(s for s in report.sections if s.id == "plan-0").html
    assert doc["winner"]["vllm_serve"] in winner and doc["winner"]["id"] in winner
    ranked_html = next(s for s in report.sections if s.id == "plan-ranked-0").html
    assert ranked_html.count("<tr>") == len(ranked) + 1


def test_plan_frontiers_are_non_dominated(planner_dirs):
    report = build_report([planner_dirs["plan"]])
    doc = json.loads((planner_dirs["plan"] / "plan.json").read_text())
    probes = pq.read_table(planner_dirs["plan"] / "probes.parquet").to_pylist()
    lower, higher = (lambda a, b: a < b), (lambda a, b: a > b)
    feasible = [{"cost": p["cost_per_hour_for_target"], "ttft": p["ttft_p90_s"] * 1e3} for p in probes
                if p["passed"] and p["gpus_for_target"] <= doc["request"]["max_gpus"]]
    edge = next(t for t in chart(report, "plan-cost-frontier").figure.data if t.name == "Pareto frontier")
    points = [{"cost": x, "ttft": y} for x, y in zip(edge.x, edge.y)]
    assert points and not any(dominated(p, feasible, {"cost": lower, "ttft": lower}) for p in points)
    # and every non-dominated point is on it
    assert sum(not dominated(p, feasible, {"cost": lower, "ttft": lower}) for p in feasible) >= len(points)
    every = [{"user": p["tokens_per_s_per_user"], "gpu": p["output_tokens_per_s_per_gpu"]} for p in probes]
    edge = next(t for t in chart(report, "plan-speed-frontier").figure.data if t.name == "Pareto frontier")
    points = [{"user": x, "gpu": y} for x, y in zip(edge.x, edge.y)]
    assert points and not any(dominated(p, every, {"user": higher, "gpu": higher}) for p in points)


def test_plan_without_winner_shows_the_closest(planner_dirs):
    report = build_report([planner_dirs["no-winner"]])
    doc = json.loads((planner_dirs["no-winner"] / "plan.json").read_text())
    assert doc["winner"] is None and doc["closest"]
    html = next(s for s in report.sections if s.id == "plan-0").html
    assert "No deployment meets the target" in html and doc["closest"][0]["id"] in html
    assert "plan-ranked-0" not in [s.id for s in report.sections]
    traces = report.chart_traces()
    assert "plan-curves-0" in traces  # the candidates with the most capacity stand in for the ranked ones
    assert "plan-cost-frontier-0" not in traces  # nothing met the SLOs within --max-gpus: no cost to plot


def test_sweep_report(planner_dirs):
    report = build_report([planner_dirs["sweep"]])
    doc = json.loads((planner_dirs["sweep"] / "sweep.json").read_text())
    table = next(s for s in report.sections if s.id == "sweep-0").html
    assert table.count("<tr>") == len(doc["points"]) + 1
    curves = chart(report, "sweep-curves")
    groups = len(doc["grid"]["max_num_seqs"])
    assert curves.traces == 2 * groups + 1  # per max_num_seqs: TTFT and TPOT panels; the frontier
    for trace in curves.figure.data[:-1]:  # each curve runs along qps
        qps = [float(t.split(",")[0].split("=")[1]) for t in trace.text]
        assert qps == sorted(qps) and len(qps) == len(doc["grid"]["qps"])
    done = [{"rps": p["requests_per_s"], "ttft": p["ttft_p90_s"] * 1e3} for p in doc["points"]]
    edge = curves.figure.data[-1]
    points = [{"rps": x, "ttft": y} for x, y in zip(edge.x, edge.y)]
    assert points and not any(dominated(p, done, {"rps": lambda a, b: a > b, "ttft": lambda a, b: a < b})
                              for p in points)


def test_planner_inputs_mix_with_runs(planner_dirs, run_dirs):
    report = build_report([planner_dirs["sweep"], run_dirs["light"], planner_dirs["plan"]])
    ids = [s.id for s in report.sections]
    assert {"sweep-0", "summary", "plan-0", "latency-cdfs"} <= set(ids)
    assert report.inputs == ["sweep", "light", "plan"]


def test_bad_planner_outputs(planner_dirs, tmp_path):
    import shutil

    plan = tmp_path / "plan"
    shutil.copytree(planner_dirs["plan"], plan)
    doc = json.loads((plan / "plan.json").read_text())
    (plan / "probes.parquet").unlink()
    with pytest.raises(ServesimError, match=r"missing probes\.parquet"):
        build_report([plan])
    (plan / "plan.json").write_text(json.dumps({**doc, "schema_version": 1}))
    with pytest.raises(ServesimError, match=r"plan schema 1 .* this servesim reads schema 2"):
        build_report([plan])
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text('{"grid": {}}')
    with pytest.raises(ServesimError, match=r"sweep\.json: missing points, config"):
        build_report([sweep])


def test_sweep_json_prints_only_the_document(tmp_path):
    from typer.testing import CliRunner

    from servesim.cli import app

    (tmp_path / "s.yaml").write_text("workload: {workload: chat, requests: 40}\ngrid:\n  qps: [2, 4]\n")
    result = CliRunner().invoke(app, ["sweep", "-c", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out"),
                                      "--executor", "serial", "--no-cache", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["qps"] for p in doc["points"]] == [2.0, 4.0]
    assert doc == json.loads((tmp_path / "out" / "sweep.json").read_text())
