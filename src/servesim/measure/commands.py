"""What `servesim measure` does; cli.py only parses its flags."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from servesim.config import RunConfig
from servesim.errors import ServesimError
from servesim.measure.loadgen import run_load, salted_prompts
from servesim.measure.results import write_measurement
from servesim.workload.build import build_workload
from servesim.workload.workload import Workload

WORKLOAD_FIELDS = ("workload", "trace", "trace_format", "limit", "time_scale", "isl", "osl", "lengths", "arrival",
                   "burstiness", "qps", "concurrency", "think_time", "requests", "duration", "seed")


def measure_command(cfg: RunConfig, url: str, model: str, output: Path, vocab_size: int, salt: int | None,
                    warmup: int, timeout: float, out: Console, err: Console, quiet: bool = False) -> dict:
    if vocab_size <= 100:
        raise ServesimError(f"--vocab-size must be > 100, got {vocab_size}")
    if warmup < 0:
        raise ServesimError(f"--warmup must be >= 0, got {warmup}")
    wl = build_workload(cfg)
    if wl.prefix_ids is not None and any(wl.prefix_ids):
        err.print("[yellow]warning:[/] measure sends unique (salted) prompts; the workload's shared prefixes are "
                  "not reproduced", highlight=False)
    salt = int.from_bytes(os.urandom(4), "little") if salt is None else salt
    if warmup:
        _warm_up(url, model, wl, warmup, vocab_size, salt, timeout, out, quiet)
    prompts = salted_prompts(wl.prompt_len, vocab_size, cfg.seed, salt)
    if not quiet:
        out.print(f"measuring {url}: {len(wl)} requests, {_load(wl)}", highlight=False)
    outcomes, started = run_load(url, model, wl, prompts, timeout)
    settings = {name: getattr(cfg, name) for name in WORKLOAD_FIELDS}
    settings.update(url=url, model=model, vocab_size=vocab_size, salt=salt, warmup=warmup)
    summary = write_measurement(output, outcomes, started, wl.prompt_len, wl.output_len, settings,
                                {"url": url, "model": model})
    failed = summary["requests"]["failed"]
    if failed == len(outcomes):
        raise ServesimError(f"every request to {url} failed; first error: {summary['requests']['first_error']}")
    if failed:
        err.print(f"[yellow]warning:[/] {failed} of {len(outcomes)} requests failed; first error: "
                  f"{summary['requests']['first_error']}", highlight=False)
    if summary["requests"]["wrong_output_length"]:
        err.print(f"[yellow]warning:[/] {summary['requests']['wrong_output_length']} answers had another length than "
                  "asked; does the server honour ignore_eos?", highlight=False)
    return summary


def _load(wl: Workload) -> str:
    if wl.closed_loop:
        return f"closed loop, concurrency {wl.concurrency}"
    return f"open loop, {wl.source.get('arrival', 'trace')} arrivals at {wl.source.get('qps', '?')} req/s"


def _warm_up(url, model, wl: Workload, count, vocab_size, salt, timeout, out, quiet) -> None:
    """A few requests first (not recorded): the server's first steps pay one-time costs."""
    n = min(count, len(wl))
    warm = Workload("warmup", wl.prompt_len[:n], wl.output_len[:n], concurrency=max(1, wl.concurrency or 4))
    prompts = salted_prompts(warm.prompt_len, vocab_size, 0, salt ^ 0x5A5A5A5A)
    if not quiet:
        out.print(f"warming up with {n} requests", highlight=False)
    outcomes, _ = run_load(url, model, warm, prompts, timeout)
    errors = [o.error for o in outcomes if o.error]
    if len(errors) == len(outcomes):
        raise ServesimError(f"the server at {url} answered no warm-up request: {errors[0]}")
