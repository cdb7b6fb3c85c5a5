"""The report as a person sees it: rendered by headless Chromium, offline, every chart drawn, no console errors."""

import os
import struct
import time

import pytest
from headless import Browser, find_chromium

from servesim.report.build import write_report

RENDERED = """(() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
    id: d.id, data: d.data.length, drawn: d.querySelectorAll('.scatterlayer .trace').length,
    points: Array.from(d.querySelectorAll('.scatterlayer .trace path.js-line')).filter(p =>
        (p.getAttribute('d') || '').length > 20).length,
    svg: d.querySelectorAll('svg.main-svg').length})))()"""

pytest_plugins = ["report_fixtures", "plan_fixtures"]  # run_dirs, copy_run, planner_dirs


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("SERVESIM_REQUIRE_CHROMIUM"):
            pytest.fail("SERVESIM_REQUIRE_CHROMIUM is set (as .ci/run does) but chromium is not installed")
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")
    b = Browser(chromium)
    yield b
    b.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def render(browser, path):
    browser.errors.clear()
    browser.requests.clear()
    browser.open(path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        charts = browser.evaluate(RENDERED)
        if charts and all(c["svg"] and c["drawn"] == c["data"] for c in charts):
            return charts
        time.sleep(0.2)
    return charts


def test_report_renders_offline_with_every_trace(browser, run_dirs, tmp_path, expected_traces):
    path = tmp_path / "report.html"
    report = write_report([run_dirs["light"], run_dirs["heavy"]], path)
    charts = render(browser, path)
    assert {c["id"]: c["data"] for c in charts} == expected_traces(2, 2) == report.chart_traces()
    for c in charts:
        assert c["drawn"] == c["data"], c  # Plotly drew every trace it was given
        assert c["points"] >= c["data"] // 2, c  # and they are lines, not empty paths
    shot = browser.screenshot(tmp_path / "report.png")
    width, height = png_size(shot)
    assert width >= 1200 and height > 4000 and len(shot) > 150_000  # the whole page, with content on it
    assert browser.errors == []
    assert [u for u in browser.requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert browser.evaluate("document.querySelectorAll('td.pass').length") == 1
    assert browser.evaluate("document.querySelectorAll('td.fail').length") == 1


def test_report_of_a_measured_run_renders(browser, measured_run, tmp_path, expected_traces):
    path = tmp_path / "measured.html"
    write_report([measured_run], path)
    charts = render(browser, path)
    assert {c["id"]: c["data"] for c in charts} == expected_traces(0, 1, slo=False)  # a measured run states no SLO
    assert all(c["drawn"] == c["data"] for c in charts) and browser.errors == []


@pytest.mark.parametrize("case", ["one-token answers", "every request rejected"])
def test_degenerate_runs_render_without_errors(browser, tmp_path, expected_traces, case):
    """Empty distributions (no TPOT or ITL at all) and runs where nothing completed still draw cleanly."""
    from servesim.config import make_config
    from servesim.metrics.io import write_result
    from servesim.simulate import run_simulation

    settings = (dict(isl=100, osl=1) if case == "one-token answers"
                else dict(isl=5000, osl=10, max_model_len=4096))
    run = write_result(run_simulation(make_config({}, qps=1, requests=5, slo_tpot="10ms", **settings)),
                       tmp_path / "run")
    path = tmp_path / "r.html"
    report = write_report([run], path)
    charts = render(browser, path)
    assert {c["id"]: c["data"] for c in charts} == expected_traces(1, 1) == report.chart_traces()
    assert browser.errors == []
    verdict = browser.evaluate("document.querySelector('td.pass, td.fail').textContent")
    assert verdict == ("PASS" if case == "one-token answers" else "FAIL")


def test_planner_report_renders(browser, planner_dirs, tmp_path):
    path = tmp_path / "plan.html"
    report = write_report([planner_dirs["plan"], planner_dirs["no-winner"], planner_dirs["sweep"]], path)
    charts = render(browser, path)
    assert {c["id"]: c["data"] for c in charts} == report.chart_traces()
    assert {"plan-cost-frontier-0", "plan-speed-frontier-0", "plan-curves-0", "plan-curves-1",
            "sweep-curves-0"} <= {c["id"] for c in charts}
    assert all(c["drawn"] == c["data"] for c in charts) and browser.errors == []
