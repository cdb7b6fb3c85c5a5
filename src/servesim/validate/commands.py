"""What `servesim validate record` and `servesim validate schedule` do; cli.py only parses their flags."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from servesim.errors import ServesimError
from servesim.validate import record as rec
from servesim.validate.scenario import load_scenario
from servesim.validate.schedule import describe_step, first_mismatch, prefix_hit_tokens, replay, trace_steps
from servesim.validate.trace import digest_warning, load_trace, version_warning

CONTEXT_STEPS = 2  # matching steps shown before the first difference


def trace_paths(scenarios: list[Path], target: Path) -> list[Path]:
    """One scenario: `target` is the trace file (or a directory). Several: `target` is a directory of STEM.json."""
    if len(scenarios) == 1 and target.suffix == ".json":
        return [target]
    if target.exists() and not target.is_dir():
        raise ServesimError(f"{target} is a file; with several scenarios give a directory for their traces")
    return [target / f"{s.stem}.json" for s in scenarios]


def record_command(scenarios: list[Path], output: Path, python: str | None, out: Console) -> None:
    loaded = [load_scenario(p) for p in scenarios]  # every file is checked before vLLM starts
    interpreter = rec.find_python(python)
    targets = trace_paths(scenarios, output)
    log = targets[0].parent / "record.log"
    out.print(f"recording {len(loaded)} scenario(s) with the real vLLM ({interpreter}); log: {log}", highlight=False)
    rec.record(loaded, targets, interpreter, log, progress=lambda line: out.print(f"  {line}", highlight=False))


def schedule_command(scenarios: list[Path], against: Path, out: Console, err: Console) -> int:
    """0 if every scenario's simulated schedule equals its trace step for step, else 1."""
    traces = trace_paths(scenarios, against)
    table = Table(title="schedule fidelity: servesim vs the real vLLM")
    table.add_column("scenario", no_wrap=True)
    for col in ("requests", "steps", "preempted", "cache hits"):
        table.add_column(col, justify="right")
    table.add_column("result", no_wrap=True)
    failures = []
    for path, trace_path in zip(scenarios, traces):
        sc = load_scenario(path)
        trace = load_trace(trace_path)
        for warning in (version_warning(trace, trace_path), digest_warning(trace, trace_path, sc.digest())):
            if warning:
                err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        sim, real = replay(sc), trace_steps(trace)
        miss = first_mismatch(sim, real)
        preemptions = sum(len(p) for _, p in real)
        hits = prefix_hit_tokens(trace)
        table.add_row(sc.name, str(sc.n), str(len(real)), str(preemptions), str(hits),
                      "[green]identical[/]" if miss is None else f"[red]differs at step {miss.step}[/]")
        if miss is not None:
            failures.append((sc.name, sim, real, miss))
    out.print(table)
    for name, sim, real, miss in failures:
        side = Table(title=f"{name}: first difference at step {miss.step} (request:tokens)")
        for col in ("step", "servesim", "vLLM"):
            side.add_column(col)
        for i in range(max(0, miss.step - CONTEXT_STEPS), miss.step + 1):
            a = sim[i] if i < len(sim) else None
            b = real[i] if i < len(real) else None
            mark = "[red]" if i == miss.step else ""
            side.add_row(f"{mark}{i}", f"{mark}{describe_step(a)}", f"{mark}{describe_step(b)}")
        out.print(side)
    return 1 if failures else 0
