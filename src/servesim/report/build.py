"""`servesim report`: read result directories, choose the sections that fit them, write one HTML file.

Extension point: a result directory's kind is recognised by the file that marks it (KINDS); each kind has a
function turning its inputs into sections (SECTION_BUILDERS). A run (simulate, measure) is the first kind;
a new kind (a planner sweep, a real-vs-simulated comparison) adds one marker and one section builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable

from servesim.errors import ServesimError
from servesim.report import charts
from servesim.report.html import Section, page
from servesim.report.plan_sections import load_plans, load_sweeps, plan_sections, sweep_sections
from servesim.report.runs import Run, load_runs
from servesim.report.slo import report_slo
from servesim.report.tables import comparison_table, slo_table, summary_table

# (marker file, kind, what writes it), checked in order
KINDS: tuple[tuple[str, str, str], ...] = (
    ("summary.json", "run", "`servesim simulate -o DIR` or `servesim measure -o DIR`"),
    ("plan.json", "plan", "`servesim plan -o DIR`"),
    ("sweep.json", "sweep", "`servesim sweep -o DIR`"),
)


def input_kind(path: Path) -> str:
    if not path.exists():
        raise ServesimError(f"result directory {str(path)!r} does not exist")
    if path.is_dir():
        for marker, kind, _ in KINDS:
            if (path / marker).exists():
                return kind
    expected = "; or ".join(f"{marker} (written by {source})" for marker, _, source in KINDS)
    raise ServesimError(f"{path}: not a servesim result directory; expected a directory holding {expected}")


@dataclass
class ReportOptions:
    slo_ttft: float | None = None
    slo_tpot: float | None = None
    slo_attainment: float = 0.9
    title: str | None = None


@dataclass
class Report:
    html: str
    sections: list[Section]
    inputs: list[str]
    notes: list[str] = field(default_factory=list)

    def chart_traces(self) -> dict[str, int]:
        return {s.id: s.chart.traces for s in self.sections if s.chart is not None}


def run_sections(runs: list[Run], options: ReportOptions,
                 progress: Callable[[], None]) -> tuple[list[Section], list[str]]:
    slo, notes = report_slo(runs, options.slo_ttft, options.slo_tpot, options.slo_attainment)
    sections = [Section("summary", "Summary", "Latencies in ms; hover a run's name for its model, GPU and workload.",
                        html=f'<div class="table-wrap">{summary_table(runs)}</div>')]
    if slo.defined:
        sections.append(Section("slo", "SLO verdicts", f"A run passes when at least {slo.attainment * 100:g}% of its "
                                f"requests (rejected ones count as misses) meet {slo.describe()}. Goodput: requests "
                                "per second meeting every SLO.", html=f'<div class="table-wrap">{slo_table(runs, slo)}'
                                "</div>", notes=tuple(notes)))
    else:
        sections[0].notes = ("No SLO given: run with --slo-ttft/--slo-tpot, or pass them to `servesim report`, "
                             "for verdicts and goodput.",)
    if len(runs) > 1:
        sections.append(Section("compare", "Comparison", f"Settings that differ, then each metric with its change "
                                f"against {runs[0].name}; green is better, red worse.",
                                html=f'<div class="table-wrap">{comparison_table(runs)}</div>'))
    builders = (lambda: charts.latency_cdfs(runs, slo), lambda: charts.latency_over_time(runs, slo),
                lambda: charts.throughput_over_time(runs, slo), lambda: charts.engine_state(runs))
    for build in builders:
        chart = build()
        if chart is not None:
            sections.append(Section.of_chart(chart))
        progress()
    for i, run in enumerate(runs):
        if run.steps is not None:
            sections.append(Section.of_chart(charts.step_composition(i, run)))
        progress()
    sections.append(Section("details", "Run details", html="".join(_details(run) for run in runs)))
    return sections, notes


def _details(run: Run) -> str:
    import yaml

    doc = {k: run.doc.get(k) for k in ("servesim_version", "seed", "meta", "config", "engine", "memory", "workload")
           if run.doc.get(k) is not None}
    text = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False)
    return (f"<details><summary>{escape(run.name)}: {escape(run.description())} ({run.kind}, "
            f"{escape(str(run.path))})</summary><pre>{escape(text)}</pre></details>")


# kind -> (loader of that kind's directories, section builder); see the module docstring
SECTION_BUILDERS: dict[str, tuple[Callable, Callable]] = {
    "run": (load_runs, run_sections),
    "plan": (load_plans, plan_sections),
    "sweep": (load_sweeps, sweep_sections),
}


def progress_steps(paths: list[Path]) -> int:
    """About how many times build_report calls progress: one per input loaded, one per input's charts, and
    four for the charts runs share."""
    return 2 * len(paths) + 4


def build_report(paths: list[str | Path], options: ReportOptions | None = None,
                 progress: Callable[[], None] = lambda: None) -> Report:
    options = options or ReportOptions()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ServesimError("no result directories given; pass one or more `servesim simulate -o` directories")
    by_kind: dict[str, list[Path]] = {}
    for p in paths:
        by_kind.setdefault(input_kind(p), []).append(p)
    sections: list[Section] = []
    notes: list[str] = []
    names, described = [], []
    for kind, kind_paths in by_kind.items():
        load, build = SECTION_BUILDERS[kind]
        inputs = load(kind_paths)
        for _ in kind_paths:
            progress()
        names += [x.name for x in inputs]
        described += [f"{x.name}: {x.description()}" for x in inputs]
        more, more_notes = build(inputs, options, progress)
        sections += more
        notes += more_notes
    title = options.title or ("servesim report: " + ", ".join(names) if len(names) <= 3
                              else f"servesim report: {len(names)} runs")
    html = page(title, "; ".join(described), sections)
    return Report(html, sections, names, notes)


def write_report(paths: list[str | Path], output: str | Path, options: ReportOptions | None = None,
                 progress: Callable[[], None] = lambda: None) -> Report:
    report = build_report(paths, options, progress)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.html, encoding="utf-8")
    return report
