"""`servesim report`: the right charts for the runs given, honest verdicts, one self-contained file, clear errors."""

import json
import re

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from servesim.cli import app
from servesim.errors import ServesimError
from servesim.report.build import ReportOptions, build_report
from servesim.report.runs import load_run

cli = CliRunner()

pytest_plugins = ["report_fixtures"]  # run_dirs, copy_run


def test_one_run_has_every_chart(run_dirs, expected_traces):
    report = build_report([run_dirs["light"]])
    assert report.chart_traces() == expected_traces(1, 1)
    assert "Comparison" not in [s.title for s in report.sections]


def test_two_runs_are_overlaid_and_compared(run_dirs, expected_traces):
    report = build_report([run_dirs["light"], run_dirs["heavy"]])
    assert report.chart_traces() == expected_traces(2, 2)
    compare = next(s for s in report.sections if s.id == "compare").html
    assert "qps" in compare and "num_gpu_blocks" in compare  # the settings that differ
    assert re.search(r'class="worse">[0-9.,]+ <span class="delta">\+[0-9.]+%', compare)  # heavy is slower


def test_verdicts_follow_the_attainment(run_dirs):
    summary = next(s for s in build_report([run_dirs["light"], run_dirs["heavy"]]).sections if s.id == "slo").html
    verdicts = re.findall(r'<td class="(pass|fail)"', summary)
    light, heavy = load_run(run_dirs["light"]), load_run(run_dirs["heavy"])
    assert light.summary["slo"]["attainment"] >= 0.9 > heavy.summary["slo"]["attainment"]
    assert verdicts == ["pass", "fail"]
    # the report's own attainment agrees with the simulator's summary
    assert f"{heavy.summary['slo']['attainment'] * 100:.1f}%" in summary


def test_slo_flags_override_the_runs(run_dirs):
    strict = build_report([run_dirs["light"]], ReportOptions(slo_ttft=1e-4))
    summary = next(s for s in strict.sections if s.id == "slo")
    assert '<td class="fail"' in summary.html and "TTFT &lt;= 0.1 ms" in summary.html
    assert any("light was run with SLOs" in n for n in strict.notes) and summary.notes == tuple(strict.notes)
    assert strict.chart_traces()["throughput-over-time"] == 3  # TTFT only is still an SLO: goodput drawn


def test_report_is_self_contained_and_deterministic(run_dirs):
    a = build_report([run_dirs["light"]]).html
    b = build_report([run_dirs["light"]]).html
    assert a == b
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", a)  # nothing fetched
    assert "Plotly.newPlot" in a and len(a) > 3_000_000  # plotly.js is inlined


def test_measured_run_without_steps(copy_run, run_dirs):
    measured = copy_run("light")
    (measured / "steps.parquet").unlink()
    report = build_report([measured, run_dirs["heavy"]])
    traces = report.chart_traces()
    assert traces["engine-state"] == 3 and "step-composition-1" in traces and "step-composition-0" not in traces
    engine = next(s for s in report.sections if s.id == "engine-state")
    assert any("measured run, no step log" in n for n in engine.notes)
    summary = next(s for s in report.sections if s.id == "summary").html
    assert "<th>kind</th>" in summary and ">measured</td>" in summary and ">simulated</td>" in summary


def test_missing_files_are_named(copy_run):
    run = copy_run()
    (run / "requests.parquet").unlink()
    with pytest.raises(ServesimError, match=r"missing requests\.parquet"):
        build_report([run])


def test_older_version_names_the_missing_columns(copy_run):
    run = copy_run()
    table = pq.read_table(run / "requests.parquet").drop_columns(["itl_s", "first_token_s"])
    pq.write_table(table, run / "requests.parquet")
    doc = json.loads((run / "summary.json").read_text())
    doc["servesim_version"] = "0.0.1"
    (run / "summary.json").write_text(json.dumps(doc))
    with pytest.raises(ServesimError,
                       match=r"missing column\(s\) first_token_s, itl_s; it was written by servesim 0\.0\.1"):
        build_report([run])


def test_not_a_result_directory(tmp_path, copy_run):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServesimError, match="not a servesim result directory"):
        build_report([tmp_path / "empty"])
    with pytest.raises(ServesimError, match="is a file"):
        load_run(copy_run() / "summary.json")
    run = copy_run()
    (run / "summary.json").write_text("{\n  oops")
    with pytest.raises(ServesimError, match=r"summary\.json:2: not valid JSON"):
        build_report([run])


def test_cli_report_json_and_errors(run_dirs, tmp_path, expected_traces):
    out = tmp_path / "r.html"
    result = cli.invoke(app, ["report", str(run_dirs["light"]), str(run_dirs["heavy"]), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["charts"] == expected_traces(2, 2) and out.stat().st_size == info["bytes"]
    quiet = cli.invoke(app, ["report", str(run_dirs["light"]), "-o", str(out), "--quiet"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    missing = cli.invoke(app, ["report", str(tmp_path / "nope"), "-o", str(out)])
    assert missing.exit_code == 2 and "does not exist" in missing.output and "Traceback" not in missing.output
    bad = cli.invoke(app, ["report", str(run_dirs["light"]), "--slo-attainment", "1.5", "-o", str(out)])
    assert bad.exit_code == 2 and "--slo-attainment 1.5" in bad.output


def test_simulate_report_writes_next_to_results(tmp_path):
    args = ["simulate", "--workload", "chat", "--qps", "5", "--requests", "60", "--slo-ttft", "500ms"]
    result = cli.invoke(app, [*args, "-o", str(tmp_path / "run"), "--report"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "report.html").stat().st_size > 3_000_000
    assert "report: " in result.stdout
    no_dir = cli.invoke(app, [*args, "--report"])
    assert no_dir.exit_code == 2 and "-o DIR" in no_dir.output


def test_run_without_slo_has_no_verdicts(copy_run, expected_traces):
    run = copy_run()
    doc = json.loads((run / "summary.json").read_text())
    doc["summary"]["slo"].update(ttft_s=None, tpot_s=None)
    (run / "summary.json").write_text(json.dumps(doc))
    report = build_report([run])
    assert report.chart_traces() == expected_traces(1, 1, slo=False)
    assert "slo" not in [s.id for s in report.sections]
    assert "No SLO given" in report.sections[0].notes[0]


def test_replica_column_splits_the_step_charts(copy_run):
    """A cluster run (a `replica` column in both files) gets one line and one step panel per replica."""
    import pyarrow as pa

    run = copy_run()
    steps = pq.read_table(run / "steps.parquet")
    replica = pa.array([i % 3 for i in range(steps.num_rows)], type=pa.int64())
    steps = steps.drop_columns([c for c in ("replica",) if c in steps.column_names])  # simulate writes one
    pq.write_table(steps.append_column("replica", replica), run / "steps.parquet")
    reqs = pq.read_table(run / "requests.parquet")
    reqs = reqs.drop_columns([c for c in ("replica",) if c in reqs.column_names])
    pq.write_table(reqs.append_column("replica", pa.array([i % 3 for i in range(reqs.num_rows)])),
                   run / "requests.parquet")
    traces = build_report([run]).chart_traces()
    assert traces["engine-state"] == 3 * 3 and traces["step-composition-0"] == 2 * 3


def test_terminal_summary_explains_itself(run_dirs):
    from rich.console import Console

    from servesim.report.terminal import summary_tables

    for name, verdict in (("light", "PASS"), ("heavy", "FAIL")):
        console = Console(record=True, width=100)
        for table in summary_tables(load_run(run_dirs[name]).summary):
            console.print(table)
        text = console.export_text()
        assert "verdict (needs 90% attainment)" in text and verdict in text
        assert "TTFT: arrival to first token" in text


def test_measured_run_fills_the_same_table(measured_run, run_dirs):
    """Real vs simulated: a measured run's numbers come from its requests, and equal the simulator's summary
    where both exist (same requests here), so the two overlay and compare like for like."""
    measured, simulated = load_run(measured_run), load_run(run_dirs["light"])
    assert measured.kind == "measured" and simulated.kind == "simulated"
    for key in ("ttft", "tpot", "e2e", "itl"):
        for q in ("p50", "p99", "mean"):
            assert measured.summary["latency_s"][key][q] == pytest.approx(simulated.summary["latency_s"][key][q])
    assert measured.summary["latency_s"]["queue"]["p99"] is None  # a client cannot see queueing
    assert measured.summary["throughput"]["requests_per_s"] == pytest.approx(
        simulated.summary["throughput"]["requests_per_s"])
    report = build_report([measured_run, run_dirs["light"]])
    summary = next(s for s in report.sections if s.id == "summary").html
    p99 = f"{simulated.summary['latency_s']['ttft']['p99'] * 1e3:.1f}"
    assert summary.count(p99) >= 2 and ">measured</td>" in summary
