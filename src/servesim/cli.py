"""servesim's command line: `servesim simulate | models | gpus | workloads`."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from servesim import __version__
from servesim.errors import ServesimError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="servesim: how an LLM serving deployment will behave, before you deploy it.")
out = Console()
err = Console(stderr=True)


def friendly(fn):
    """Bad input ends as one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ServesimError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool):
    if value:
        from servesim.compiled import compiled_core

        out.print(f"servesim {__version__}{' (compiled core)' if compiled_core() else ''}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")):
    pass


@app.command()
@friendly
def simulate(
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Run settings in YAML (flags override it)."),
    model: Optional[str] = typer.Option(None, help="Model short name or Hugging Face id (see `servesim models`)."),
    model_config: Optional[Path] = typer.Option(None, help="A Hugging Face config.json for any other model."),
    gpu: Optional[str] = typer.Option(None, help="GPU name (see `servesim gpus`) or a device YAML file."),
    tp: Optional[int] = typer.Option(None, help="Tensor-parallel size: 1, 2, 4, 8."),
    pp: Optional[int] = typer.Option(None, help="Pipeline-parallel stages (GPUs per replica = tp * pp)."),
    dtype: Optional[str] = typer.Option(None, help="Weight dtype: bf16 or fp8."),
    kv_cache_dtype: Optional[str] = typer.Option(None, help="KV cache dtype: bf16 or fp8 (default: bf16, as vLLM's auto)."),
    engine: Optional[str] = typer.Option(None, help="Whose kernels and step overhead clock the GPU: vllm, sglang, trtllm."),
    cost_model: Optional[str] = typer.Option(None, help="Step clock: calibrated (fitted kernels) or roofline."),
    kernels: Optional[Path] = typer.Option(None, help="Kernel calibration file from `servesim calibrate --kernels`."),
    interconnect: Optional[str] = typer.Option(None, help="GPU link for TP/PP: nvlink (catalog's) or pcie."),
    policy: Optional[str] = typer.Option(None, help="Scheduling policy: vllm-v1, sarathi, splitfuse, orca, static, sglang, priority, fair (docs/policies.md)."),
    policy_options: Optional[str] = typer.Option(None, help="Policy knobs KEY=NUMBER,... e.g. new_token_ratio=0.5 (sglang)."),
    replicas: Optional[int] = typer.Option(None, help="Co-located replicas of --gpu/--tp behind the router."),
    router: Optional[str] = typer.Option(None, help="round-robin, least-outstanding, least-kv, power-of-two, prefix-affinity."),
    router_load_cap: Optional[int] = typer.Option(None, help="prefix-affinity: max outstanding requests above the least loaded replica (4)."),
    prefill_pool: Optional[str] = typer.Option(None, help="Disaggregated prefill pool GPU:TPxN, e.g. h100:1x2."),
    decode_pool: Optional[str] = typer.Option(None, help="Disaggregated decode pool GPU:TPxN, e.g. h100:1x6."),
    kv_link: Optional[str] = typer.Option(None, help="KV transfer link between the pools: auto, nvlink, network."),
    kv_layerwise: Optional[bool] = typer.Option(None, "--kv-layerwise/--no-kv-layerwise", help="Send KV layer by layer during the prefill."),
    workload: Optional[str] = typer.Option(None, help="Built-in workload (see `servesim workloads`)."),
    trace: Optional[Path] = typer.Option(None, help="Replay a trace file (Azure, Vidur, BurstGPT CSV; Mooncake JSONL)."),
    trace_format: Optional[str] = typer.Option(None, help="Trace format if not detected: azure, vidur, burstgpt, mooncake."),
    limit: Optional[int] = typer.Option(None, help="Replay only the first N trace rows."),
    time_scale: Optional[float] = typer.Option(None, help="Multiply trace arrival times (0.5 = twice as fast)."),
    isl: Optional[int] = typer.Option(None, help="Fixed input (prompt) length in tokens."),
    osl: Optional[int] = typer.Option(None, help="Fixed output length in tokens."),
    lengths: Optional[str] = typer.Option(None, help="uniform:PLO-PHI,OLO-OHI | lognormal:PMED,PSIG,OMED,OSIG | empirical:FILE"),
    arrival: Optional[str] = typer.Option(None, help="Arrival process: poisson, gamma, constant."),
    burstiness: Optional[float] = typer.Option(None, help="CV of inter-arrival times for gamma arrivals (>1 = bursty)."),
    qps: Optional[float] = typer.Option(None, help="Open-loop request rate (req/s)."),
    concurrency: Optional[int] = typer.Option(None, help="Closed loop: N clients, each waits for its answer."),
    think_time: Optional[str] = typer.Option(None, help="Closed loop: pause between answer and next request."),
    requests: Optional[int] = typer.Option(None, help="Number of requests."),
    duration: Optional[str] = typer.Option(None, help="Generate requests for this long at --qps (e.g. 600s, 10m)."),
    clients: Optional[str] = typer.Option(None, help="Clients NAME:SHARE[:PRIORITY],... e.g. chat:0.3:0,batch:0.7:1."),
    block_size: Optional[int] = typer.Option(None, help="KV block size in tokens (vLLM default 16)."),
    max_num_batched_tokens: Optional[int] = typer.Option(None, help="Token budget per step (default: vLLM's for the GPU)."),
    max_num_seqs: Optional[int] = typer.Option(None, help="Max running requests (default: vLLM's for the GPU)."),
    max_model_len: Optional[int] = typer.Option(None, help="Max tokens per request (default: the model's)."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, help="Fraction of GPU memory vLLM may use (0.9)."),
    num_gpu_blocks: Optional[int] = typer.Option(None, help="Override the number of KV blocks."),
    prefix_caching: Optional[bool] = typer.Option(None, "--prefix-caching/--no-prefix-caching", help="Automatic prefix caching (on in vLLM)."),
    chunked_prefill: Optional[bool] = typer.Option(None, "--chunked-prefill/--no-chunked-prefill", help="Chunked prefill (on in vLLM)."),
    long_prefill_token_threshold: Optional[int] = typer.Option(None, help="Cap on prompt tokens one request takes per step."),
    watermark: Optional[float] = typer.Option(None, help="Fraction of KV blocks kept free at admission."),
    enforce_eager: Optional[bool] = typer.Option(None, "--enforce-eager", help="No CUDA graphs (frees their memory)."),
    step_overhead: Optional[str] = typer.Option(None, help="Fixed CPU time per engine step (e.g. 2ms)."),
    slo_ttft: Optional[str] = typer.Option(None, help="TTFT SLO, e.g. 500ms."),
    slo_tpot: Optional[str] = typer.Option(None, help="TPOT SLO, e.g. 50ms."),
    seed: Optional[int] = typer.Option(None, help="Random seed (same seed, same results)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write results to this directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
    report: bool = typer.Option(False, "--report", help="Also write report.html (charts, SLO verdicts) into -o DIR."),
):
    """Simulate a serving deployment (one replica, replicas behind a router, or prefill/decode pools) on a
    workload; print latency, throughput and SLO goodput."""
    from servesim.config import load_config, make_config
    from servesim.report.terminal import LazyProgress, cluster_tables, summary_tables
    from servesim.simulate import run_simulation
    from servesim.workload.build import build_workload

    if report and not output:
        raise ServesimError("--report writes report.html next to the results: give an output directory with -o DIR")
    file_values = load_config(config) if config else {}
    cfg = make_config(
        file_values, model=model, model_config=str(model_config) if model_config else None, gpu=gpu, tp=tp,
        pp=pp, dtype=dtype, kv_cache_dtype=kv_cache_dtype, engine=engine, cost_model=cost_model,
        kernels=str(kernels) if kernels else None, interconnect=interconnect, policy=policy,
        policy_options=policy_options, replicas=replicas, router=router, router_load_cap=router_load_cap,
        prefill_pool=prefill_pool, decode_pool=decode_pool, kv_link=kv_link, kv_layerwise=kv_layerwise,
        clients=clients, workload=workload,
        trace=str(trace) if trace else None, trace_format=trace_format, limit=limit, time_scale=time_scale,
        isl=isl, osl=osl, lengths=lengths, arrival=arrival, burstiness=burstiness, qps=qps, concurrency=concurrency,
        think_time=think_time, requests=requests, duration=duration, block_size=block_size,
        max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization, num_gpu_blocks=num_gpu_blocks,
        enable_prefix_caching=prefix_caching, enable_chunked_prefill=chunked_prefill,
        long_prefill_token_threshold=long_prefill_token_threshold, watermark=watermark, enforce_eager=enforce_eager,
        step_overhead=step_overhead, slo_ttft=slo_ttft, slo_tpot=slo_tpot, seed=seed,
    )
    wl = build_workload(cfg)
    progress = LazyProgress(len(wl), "simulating", err, enabled=not (quiet or json_out))
    started = time.perf_counter()
    try:
        result = run_simulation(cfg, progress=progress, workload=wl)
    finally:
        progress.close()
    wall = time.perf_counter() - started
    from servesim.metrics.io import _clean, write_result  # pyarrow (~35 MiB) loads after the run's memory peak

    if output:
        write_result(result, output)
    if report:
        _write_report([output], output / "report.html", quiet or json_out)
    if json_out:
        sys.stdout.write(json.dumps(_clean(result.summary), indent=1, sort_keys=True) + "\n")
        return
    if quiet:
        return
    where = ", ".join(result.summary["cluster"]["pools"])
    title = (f"{result.meta['model']['name']} on {where}" + (f" PP={cfg.pp}" if cfg.pp > 1 else "")
             + f" ({cfg.cost_model} clock, {cfg.engine} kernels), {cfg.policy}, {result.workload.name}: {len(wl)} requests")
    out.print(f"[bold]{title}[/]")
    for table in summary_tables(result.summary) + cluster_tables(result.summary):
        out.print(table)
    out.print(f"simulated {len(wl)} requests in {wall:.2f} s wall ({len(wl) / wall:,.0f} req/s)", highlight=False)
    if output:
        out.print(f"results in {output}/ (summary.json, requests.parquet, steps.parquet, config.yaml)", highlight=False)
    if report:
        out.print(f"report: {output / 'report.html'}", highlight=False)


def _write_report(paths, output: Path, silent: bool, options=None):
    try:
        import plotly  # noqa: F401  (an optional extra)
    except ImportError:
        raise ServesimError("the HTML report needs plotly: pip install 'servesim[report]'") from None
    from servesim.report.build import progress_steps, write_report
    from servesim.report.terminal import LazyProgress

    with LazyProgress(progress_steps(paths), "writing report", err, enabled=not silent) as progress:
        return write_report(paths, output, options, progress.advance)


@app.command("report")
@friendly
def report_command(
    runs: list[Path] = typer.Argument(..., help="Result directories of `simulate`, `plan` or `sweep` (-o DIR); "
                                      "several runs are overlaid and compared."),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="The HTML file to write."),
    slo_ttft: Optional[str] = typer.Option(None, help="Judge every run by this TTFT SLO (default: the first run's)."),
    slo_tpot: Optional[str] = typer.Option(None, help="Judge every run by this TPOT SLO (default: the first run's)."),
    slo_attainment: float = typer.Option(0.9, help="Share of requests that must meet the SLOs for a PASS."),
    title: Optional[str] = typer.Option(None, help="Page title."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
):
    """Write one self-contained HTML report (opens offline). Runs: summary and SLO verdicts, latency CDFs,
    latency, throughput, goodput, queue, batch and KV cache over time, step composition; several overlaid.
    Plans: the winner, Pareto frontiers, top candidates' throughput-latency curves. Sweeps: table and curves."""
    from servesim.config import parse_duration
    from servesim.report.build import ReportOptions

    options = ReportOptions(slo_ttft=parse_duration(slo_ttft, "--slo-ttft") if slo_ttft else None,
                            slo_tpot=parse_duration(slo_tpot, "--slo-tpot") if slo_tpot else None,
                            slo_attainment=slo_attainment, title=title)
    result = _write_report(runs, output, quiet or json_out, options)
    info = {"output": str(output), "bytes": output.stat().st_size, "inputs": result.inputs,
            "charts": result.chart_traces(), "notes": result.notes}
    if json_out:
        sys.stdout.write(json.dumps(info, indent=1) + "\n")
    elif not quiet:
        for note in result.notes:
            err.print(f"note: {note}", highlight=False)
        out.print(f"report: {output} ({info['bytes'] / 1e6:.1f} MB, {len(info['charts'])} charts, "
                  f"{len(result.inputs)} run{'s' if len(result.inputs) != 1 else ''})", highlight=False)


@app.command("trace")
@friendly
def trace_command(
    run: Path = typer.Argument(..., help="A result directory (`simulate -o DIR`)."),
    output: Path = typer.Option(Path("trace.json"), "-o", "--output", help="The trace JSON file to write."),
    max_step_slices: int = typer.Option(20_000, help="At most this many step slices: beyond it, runs of k "
                                        "consecutive steps (k a power of two) become one slice whose duration is "
                                        "their sum and whose args total their tokens; counters show the peak."),
    max_requests: int = typer.Option(2_000, help="At most this many requests drawn as async slices and flows: "
                                     "beyond it, the slowest half by E2E and an even spread of the rest."),
    json_out: bool = typer.Option(False, "--json", help="Print what was written as JSON on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
):
    """Write a Chrome/Perfetto trace (open in ui.perfetto.dev or chrome://tracing): a track per replica with a
    slice per engine step (batch composition in its args), counters, and requests as async slices with flows."""
    from servesim.report.terminal import LazyProgress
    from servesim.report.trace import WRITE_STAGES, write_trace

    for name, value in (("--max-step-slices", max_step_slices), ("--max-requests", max_requests)):
        if value < 1:
            raise ServesimError(f"{name} {value} must be at least 1")
    with LazyProgress(WRITE_STAGES, "writing trace", err, enabled=not (quiet or json_out)) as progress:
        meta = write_trace(run, output, max_step_slices, max_requests, progress.advance)
    meta = {"output": str(output), "bytes": output.stat().st_size, **meta}
    if json_out:
        sys.stdout.write(json.dumps(meta, indent=1) + "\n")
    elif not quiet:
        merged = (", no step log (a measured run)" if meta["kind"] == "measured"
                  else f", {meta['steps']:,} steps as {meta['step_slices']:,} slices")
        out.print(f"trace: {output} ({meta['bytes'] / 1e6:.1f} MB{merged}, {meta['requests_drawn']:,} of "
                  f"{meta['requests']:,} requests drawn); open it in https://ui.perfetto.dev", highlight=False)


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _listing(title: str, columns: tuple[str, ...], rows: list[list[str]], json_out: bool) -> None:
    """A listing as a rich table, or with --json as a list of objects keyed by the column names."""
    if json_out:
        sys.stdout.write(json.dumps([{c: _number(v) for c, v in zip(columns, row)} for row in rows], indent=1) + "\n")
        return
    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*row)
    out.print(t)


JSON_LIST = typer.Option(False, "--json", help="Print the list as JSON on stdout.")


def _list(text: str, kind, what: str) -> tuple:
    """A comma-separated flag value: `h100,h200` or `128,256,auto` (auto = vLLM's default)."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if kind is int:
            if item == "auto":
                out.append(None)
                continue
            try:
                out.append(int(item))
            except ValueError:
                raise ServesimError(f"{what} {text!r}: {item!r} is not an integer (or auto)") from None
        else:
            out.append(item)
    if not out:
        raise ServesimError(f"{what} is empty; give a comma-separated list")
    return tuple(out)


def _fraction(text: str, what: str) -> float:
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ServesimError(f"{what} {text!r} is not a fraction; write 0.9 or 90%") from None


def _ex(name: str):
    """The executor and cache options `plan` and `sweep` share (a fresh typer.Option per use)."""
    return {
        "executor": lambda: typer.Option("local", help="Where simulations run: local (process pool on every core), ray, serial."),
        "workers": lambda: typer.Option(None, help="Worker processes (default: every core)."),
        "ray_address": lambda: typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
        "cache": lambda: typer.Option(Path(".servesim-cache/results.sqlite"), help="Results cache (re-used across runs)."),
        "no_cache": lambda: typer.Option(False, "--no-cache", help="Neither read nor write the results cache."),
    }[name]()


@app.command()
@friendly
def plan(
    qps: float = typer.Option(..., help="Target traffic to serve (req/s)."),
    slo_ttft: Optional[str] = typer.Option(None, "--slo-ttft", "--slo-ttft-p90", help="TTFT SLO, e.g. 1s (met by --attainment of requests)."),
    slo_tpot: Optional[str] = typer.Option(None, "--slo-tpot", "--slo-tpot-p90", help="TPOT SLO, e.g. 60ms."),
    attainment: str = typer.Option("90%", help="Share of requests that must meet every SLO (DistServe's attainment)."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Base run settings in YAML (model, workload, engine)."),
    model: Optional[str] = typer.Option(None, help="Model short name or Hugging Face id."),
    model_config: Optional[Path] = typer.Option(None, help="A Hugging Face config.json for any other model."),
    workload: Optional[str] = typer.Option(None, help="Built-in workload (see `servesim workloads`)."),
    trace: Optional[Path] = typer.Option(None, help="Trace whose lengths and burstiness to plan for (rescaled to --qps)."),
    isl: Optional[int] = typer.Option(None, help="Fixed input length."),
    osl: Optional[int] = typer.Option(None, help="Fixed output length."),
    lengths: Optional[str] = typer.Option(None, help="Length distribution, as for simulate."),
    arrival: Optional[str] = typer.Option(None, help="Arrival process: poisson, gamma, constant."),
    burstiness: Optional[float] = typer.Option(None, help="CV of inter-arrival times for gamma arrivals."),
    gpus: str = typer.Option("h100,h200,a100", help="GPU types to consider, comma-separated."),
    tp: str = typer.Option("1,2,4,8", help="Tensor-parallel sizes to consider."),
    pp: str = typer.Option("1", help="Pipeline-parallel sizes to consider."),
    dtype: str = typer.Option("bf16", help="Weight dtypes to consider (bf16, fp8)."),
    max_num_seqs: str = typer.Option("128,256,auto", help="max_num_seqs values (auto = vLLM's default for the GPU)."),
    max_num_batched_tokens: str = typer.Option("2048,8192,auto", help="max_num_batched_tokens values."),
    chunk: str = typer.Option("0", "--long-prefill-token-threshold", "--chunk", help="Per-request prefill chunk caps (0 = none)."),
    disagg: str = typer.Option("off", help="Disaggregated prefill/decode units (xPyD): off, on (also search them), only."),
    disagg_max_pool: int = typer.Option(4, help="Most replicas in one pool of an xPyD unit (x, y <= this, coprime)."),
    disagg_max_gpus: int = typer.Option(8, help="Most GPUs in one xPyD unit (8: one node, KV over NVLink)."),
    disagg_mixed_gpus: bool = typer.Option(False, "--disagg-mixed-gpus", help="Also pair pools of different GPU types (KV over the network)."),
    router: Optional[str] = typer.Option(None, help="Router in front of the replicas (and of each pool): round-robin, least-outstanding, ..."),
    max_gpus: int = typer.Option(64, help="Most GPUs the deployment may use."),
    prices: Optional[Path] = typer.Option(None, help="GPU prices YAML (default: the bundled, documented one)."),
    max_model_len: Optional[int] = typer.Option(None, help="Max tokens per request (default: the workload's longest, rounded up)."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, help="Fraction of GPU memory vLLM may use (0.9)."),
    prefix_caching: Optional[bool] = typer.Option(None, "--prefix-caching/--no-prefix-caching", help="Automatic prefix caching."),
    probe_requests: int = typer.Option(400, help="At least this many requests per capacity probe."),
    probe_seconds: str = typer.Option("60s", help="Probes span at least this much traffic (longer: steadier, slower)."),
    verify_requests: int = typer.Option(2000, help="At least this many requests in the winner's verification run."),
    verify_seconds: str = typer.Option("300s", help="The verification run spans at least this much traffic."),
    tolerance: float = typer.Option(0.05, help="Capacity resolution: grid rates differ by this fraction."),
    window: int = typer.Option(8, help="Candidates decided before the results that prune them are in (fixed for determinism)."),
    top: int = typer.Option(5, help="Probe this many best deployments at their operating rate."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Simulate every candidate that fits (no bound pruning)."),
    seed: Optional[int] = typer.Option(None, help="Random seed of the workload sample."),
    executor: str = _ex("executor"), workers: Optional[int] = _ex("workers"), ray_address: Optional[str] = _ex("ray_address"),
    cache: Path = _ex("cache"), no_cache: bool = _ex("no_cache"),
    output: Path = typer.Option(Path("runs/plan"), "-o", "--output", help="Write plan.json, plan.parquet, probes.parquet here."),
    json_out: bool = typer.Option(False, "--json", help="Print plan.json on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors and the outcome."),
):
    """Find the cheapest deployment (GPU, TP, replicas, scheduler knobs) that serves --qps within the SLOs."""
    from servesim.config import load_config, make_config, parse_duration
    from servesim.plan.cache import ResultCache
    from servesim.plan.evaluate import evaluate
    from servesim.plan.executors import make_executor
    from servesim.plan.output import write_plan
    from servesim.plan.prices import load_prices
    from servesim.plan.search import PlanRequest
    from servesim.plan.search import plan as run_plan
    from servesim.plan.space import SearchSpace
    from servesim.report.plan_report import SearchProgress, closest_table, counts_line, frontier_tables, ranked_table

    file_values = load_config(config) if config else {}
    base = make_config(
        file_values, model=model, model_config=str(model_config) if model_config else None, workload=workload,
        trace=str(trace) if trace else None, isl=isl, osl=osl, lengths=lengths, arrival=arrival, burstiness=burstiness,
        max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=prefix_caching, slo_ttft=slo_ttft, slo_tpot=slo_tpot, seed=seed, router=router,
    )
    space = SearchSpace(gpus=_list(gpus, str, "--gpus"), tp=_list(tp, int, "--tp"), pp=_list(pp, int, "--pp"),
                        dtype=_list(dtype, str, "--dtype"), max_num_seqs=_list(max_num_seqs, int, "--max-num-seqs"),
                        max_num_batched_tokens=_list(max_num_batched_tokens, int, "--max-num-batched-tokens"),
                        long_prefill_token_threshold=_list(chunk, int, "--long-prefill-token-threshold"),
                        disagg=disagg, disagg_max_pool=disagg_max_pool, disagg_max_gpus=disagg_max_gpus,
                        disagg_mixed_gpus=disagg_mixed_gpus)
    request = PlanRequest(base, qps, space, load_prices(prices), attainment=_fraction(attainment, "--attainment"),
                          max_gpus=max_gpus, probe_requests=probe_requests, probe_seconds=parse_duration(probe_seconds, "--probe-seconds"),
                          verify_requests=verify_requests, verify_seconds=parse_duration(verify_seconds, "--verify-seconds"),
                          tolerance=tolerance, window=window, top=top, exhaustive=exhaustive)
    store = ResultCache(None if no_cache else cache)
    pool = make_executor(executor, evaluate, workers, ray_address)
    progress = SearchProgress(err, "simulating candidates", enabled=not (quiet or json_out))
    started = time.perf_counter()
    try:
        result = run_plan(request, pool, store, progress)
    except BaseException:
        pool.terminate()
        raise
    finally:
        progress.close()
        pool.close()
        store.close()
    wall = time.perf_counter() - started
    doc, _ = write_plan(result, output)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    elif not quiet:
        if doc["winner"]:
            out.print(ranked_table(doc))
            for t in frontier_tables(doc):
                out.print(t)
        out.print(counts_line(doc), highlight=False)
        out.print(f"searched in {wall:.1f} s wall on {pool.name} ({pool.workers} workers); results in {output}/ "
                  "(plan.json, plan.parquet, probes.parquet)", highlight=False)
    if result.interrupted:
        err.print(f"interrupted: kept the {sum(1 for p in result.points if p.capacity)} finished candidates in {output}/ "
                  "and in the results cache; run again to resume")
        raise typer.Exit(130)
    w = doc["winner"]
    if w is None:
        (err if json_out else out).print(closest_table(doc))
        raise typer.Exit(1)
    if not json_out:
        v = w["verification"] or {}
        n = v.get("simulated_replicas") or 1
        kind = "xPyD units" if w["mode"] == "disaggregated" else "replicas"
        where = (f"{v.get('rate', 0):.2f} req/s over all {n} {kind} behind the {doc['config']['router']} router" if n > 1
                 else f"{v.get('rate', 0):.2f} req/s on one {kind[:-1]}")
        out.print(f"[bold]cheapest:[/] {w['replicas']} x {w['id']} = {w['gpus']} GPUs, ${w['cost_per_hour']:.2f}/hour; "
                  f"verified on {(v.get('completed') or 0) + (v.get('rejected') or 0)} requests at {where}: "
                  f"{(v.get('attainment') or 0) * 100:.1f}% within the SLOs", highlight=False)
        out.print(f"[bold]deploy:[/] {w['deploy']}:", highlight=False)
        for line in w["vllm_serve"].splitlines():
            out.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
        out.print(f"[dim]replicas: {doc['replica_model']}[/]", highlight=False)
        if not w["verified"]:
            err.print(f"[bold yellow]warning:[/] on the longer verification run only {(v.get('attainment') or 0) * 100:.1f}% "
                      f"of requests meet the SLOs (target {doc['request']['attainment']:.0%}): either the traffic changes "
                      "over longer spans than the capacity probes cover (raise --probe-seconds, now "
                      f"{doc['request']['probe_seconds']:g} s) or the router splits it less evenly than the capacity "
                      "search assumes (try --router least-outstanding); do not trust this plan as it is", highlight=False)


@app.command()
@friendly
def sweep(
    config: Path = typer.Option(..., "-c", "--config", help="Sweep YAML: run settings plus a `grid:` of lists."),
    executor: str = _ex("executor"), workers: Optional[int] = _ex("workers"), ray_address: Optional[str] = _ex("ray_address"),
    cache: Path = _ex("cache"), no_cache: bool = _ex("no_cache"),
    output: Path = typer.Option(Path("runs/sweep"), "-o", "--output", help="Write sweep.json and sweep.parquet here."),
    json_out: bool = typer.Option(False, "--json", help="Print sweep.json on stdout, nothing else."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
):
    """Simulate every combination of a grid of settings (e.g. max_num_seqs x max_num_batched_tokens)."""
    from servesim.plan.cache import ResultCache
    from servesim.plan.evaluate import evaluate
    from servesim.plan.executors import make_executor
    from servesim.plan.sweep import load_sweep, run_sweep, sweep_rows, write_sweep
    from servesim.report.plan_report import SearchProgress, sweep_table

    spec = load_sweep(config)
    store = ResultCache(None if no_cache else cache)
    pool = make_executor(executor, evaluate, workers, ray_address)
    progress = SearchProgress(err, "simulating grid points", enabled=not (quiet or json_out))
    try:
        points, probes, interrupted = run_sweep(spec, pool, store, progress)
    except BaseException:
        pool.terminate()
        raise
    finally:
        progress.close()
        pool.close()
        store.close()
    rows = sweep_rows(spec, points, probes)
    write_sweep(spec, rows, output, interrupted)
    if json_out:
        sys.stdout.write((output / "sweep.json").read_text())
    elif not quiet:
        out.print(sweep_table(spec.grid, rows))
        out.print(f"results in {output}/ (sweep.json, sweep.parquet)", highlight=False)
    if interrupted:
        err.print(f"interrupted: kept {sum(r['done'] for r in rows)} of {len(rows)} points in {output}/ and the cache")
        raise typer.Exit(130)


@app.command()
@friendly
def models(json_out: bool = JSON_LIST):
    """List the bundled models."""
    from servesim.models.catalog import list_models

    rows = [[m.name, m.hf_id, f"{m.num_params / 1e9:.2f}B", str(m.num_layers), str(m.hidden_size),
             f"{m.num_heads}/{m.num_kv_heads}", f"{m.kv_bytes_per_token() / 1024:.0f} KiB"] for m in list_models()]
    _listing("bundled models (--model NAME or Hugging Face id; --model-config FILE for others)",
             ("name", "hugging face id", "params", "layers", "hidden", "heads/kv", "KV per token (bf16)"),
             rows, json_out)


@app.command()
@friendly
def gpus(json_out: bool = JSON_LIST):
    """List the GPU catalog."""
    from servesim.hardware.catalog import list_devices

    rows = [[d.name, f"{d.bf16_flops / 1e12:.0f}", f"{d.fp8_flops / 1e12:.0f}" if d.has_fp8 else "-",
             f"{d.mem_bytes / 1e9:.0f}", f"{d.mem_bandwidth / 1e12:.2f}", d.link_kind, f"{d.link_bandwidth / 1e9:.0f}"]
            for d in list_devices()]
    _listing("GPUs (--gpu NAME, or a device YAML file)",
             ("name", "BF16 TFLOP/s", "FP8 TFLOP/s", "memory GB", "bandwidth TB/s", "link", "link GB/s"),
             rows, json_out)


@app.command()
@friendly
def workloads(json_out: bool = JSON_LIST):
    """List the built-in workloads and the traces they were fitted from."""
    from servesim.workload.presets import presets

    rows = []
    for name, p in presets().items():
        reuse = p.get("prefix", {}).get("reuse_probability")
        rows.append([name, "-" if p["rate"] is None else f"{p['rate']:.2f}", f"{p['cv']:.2f}",
                     f"{p['prompt_mean']:.0f}", f"{p['output_mean']:.0f}",
                     "-" if reuse is None else f"{reuse * 100:.0f}%", p["source"]])
    _listing("built-in workloads (--workload NAME)",
             ("name", "rate req/s", "burstiness CV", "prompt mean", "output mean", "prefix reuse", "fitted from"),
             rows, json_out)


@app.command()
@friendly
def fit(
    model: str = typer.Option("llama-3.1-8b", help="Model short name or Hugging Face id."),
    model_config: Optional[Path] = typer.Option(None, help="A Hugging Face config.json for any other model."),
    gpu: str = typer.Option("h100", help="GPU name or device YAML file."),
    pp: int = typer.Option(1, help="Pipeline-parallel stages."),
    dtype: str = typer.Option("bf16", help="Weight dtype: bf16 or fp8."),
    kv_cache_dtype: Optional[str] = typer.Option(None, help="KV cache dtype: bf16 or fp8 (default bf16)."),
    gpu_memory_utilization: float = typer.Option(0.9, help="Fraction of GPU memory vLLM may use."),
    max_num_batched_tokens: Optional[int] = typer.Option(None, help="Token budget per step (vLLM's default)."),
    max_num_seqs: Optional[int] = typer.Option(None, help="Max running requests (vLLM's default)."),
    max_model_len: Optional[int] = typer.Option(None, help="Longest request (default: the model's context)."),
    block_size: int = typer.Option(16, help="KV block size in tokens."),
    json_out: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
):
    """How a model fits a GPU at each TP size: vLLM's memory split and the KV tokens it can hold."""
    from servesim.hardware.catalog import get_device
    from servesim.models.catalog import get_model, load_model_config
    from servesim.perf.capacity import fit_rows

    spec = (load_model_config(model_config) if model_config else get_model(model)).with_dtype(dtype)
    device = get_device(gpu)
    device.peak_flops(spec.dtype)
    rows = fit_rows(spec, device, pp, kv_cache_dtype, block_size, gpu_memory_utilization, max_num_batched_tokens,
                    max_num_seqs, max_model_len=max_model_len)
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    budget = next((f", budget {r['budget_gib']:.2f}" for r in rows if "budget_gib" in r), "")
    t = Table(title=f"{spec.name} ({spec.dtype}) on {device.name} x TP x PP={pp}: GiB per GPU{budget}")
    for col in ("TP", "weights", "activ.", "reserve", "KV", "KV/tok", "blocks", "max tokens", "fits"):
        t.add_column(col, justify="right")
    notes = []
    for r in rows:
        if "num_blocks" not in r:
            t.add_row(str(r["tp"]), *["-"] * 7, "no")
            notes.append(f"TP={r['tp']}: {r['reason']}")
            continue
        t.add_row(str(r["tp"]), f"{r['weights_gib']:.2f}", f"{r['activation_gib']:.2f}", f"{r['reserve_gib']:.2f}", f"{r['kv_gib']:.2f}",
                  f"{r['kv_bytes_per_token'] / 1024:.0f}K", f"{r['num_blocks']:,}", f"{r['max_tokens']:,}",
                  "yes" if r["fits"] else "no")
        if not r["fits"]:
            notes.append(f"TP={r['tp']}: {r['reason']}")
    out.print(t)
    for note in notes:
        out.print(note, highlight=False)


@app.command()
@friendly
def measure(
    url: str = typer.Option(..., help="The server, e.g. http://127.0.0.1:8000 (OpenAI-compatible /v1/completions)."),
    model: str = typer.Option(..., help="The model name the server serves."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", help="Workload settings in YAML (flags override it)."),
    workload: Optional[str] = typer.Option(None, help="Built-in workload (see `servesim workloads`)."),
    trace: Optional[Path] = typer.Option(None, help="Replay a trace file's lengths and times."),
    limit: Optional[int] = typer.Option(None, help="Replay only the first N trace rows."),
    time_scale: Optional[float] = typer.Option(None, help="Multiply trace arrival times."),
    isl: Optional[int] = typer.Option(None, help="Fixed input (prompt) length in tokens."),
    osl: Optional[int] = typer.Option(None, help="Fixed output length in tokens."),
    lengths: Optional[str] = typer.Option(None, help="uniform:PLO-PHI,OLO-OHI | lognormal:... | empirical:FILE"),
    arrival: Optional[str] = typer.Option(None, help="Arrival process: poisson, gamma, constant."),
    burstiness: Optional[float] = typer.Option(None, help="CV of inter-arrival times for gamma arrivals."),
    qps: Optional[float] = typer.Option(None, help="Open loop: request rate (req/s)."),
    concurrency: Optional[int] = typer.Option(None, help="Closed loop: N clients, each waits for its answer."),
    think_time: Optional[str] = typer.Option(None, help="Closed loop: pause between answer and next request."),
    requests: Optional[int] = typer.Option(None, help="Number of requests."),
    duration: Optional[str] = typer.Option(None, help="Generate requests for this long at --qps."),
    seed: Optional[int] = typer.Option(None, help="Seed of lengths, arrivals and prompt tokens."),
    vocab_size: int = typer.Option(32000, help="Prompt token ids are drawn below this (the model's vocabulary size)."),
    salt: Optional[int] = typer.Option(None, help="Salt of the prompt tokens (default: random, so runs share no prefix)."),
    warmup: int = typer.Option(0, help="Send this many unrecorded requests first."),
    timeout: float = typer.Option(600.0, help="Seconds to wait for one answer."),
    output: Path = typer.Option(..., "-o", "--output", help="Write requests.parquet, summary.json, config.yaml here."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
):
    """Drive a real OpenAI-compatible server (vLLM, SGLang, ...) with a workload; record TTFT, every ITL, E2E."""
    from servesim.config import load_config, make_config
    from servesim.measure.commands import measure_command
    from servesim.report.comparison import measured_table

    file_values = load_config(config) if config else {}
    cfg = make_config(file_values, workload=workload, trace=str(trace) if trace else None, limit=limit,
                      time_scale=time_scale, isl=isl, osl=osl, lengths=lengths, arrival=arrival, burstiness=burstiness,
                      qps=qps, concurrency=concurrency, think_time=think_time, requests=requests, duration=duration,
                      seed=seed)
    summary = measure_command(cfg, url, model, output, vocab_size, salt, warmup, timeout, out, err, quiet)
    if not quiet:
        out.print(measured_table(summary["metrics"]))
        out.print(f"results in {output}/ (requests.parquet, summary.json, config.yaml)", highlight=False)


@app.command()
@friendly
def compare(
    real: Path = typer.Argument(..., help="A measured run directory (`servesim measure -o`)."),
    sim: Path = typer.Argument(..., help="A simulated run directory (`servesim simulate -o`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON, nothing else."),
):
    """Per metric (TTFT, TPOT, ITL, E2E at p50/p90/p99, throughput): real, predicted and relative error."""
    from servesim.metrics.compare import compare_runs, rows_as_json
    from servesim.report.comparison import comparison_table

    rows = compare_runs(real, sim)
    if json_out:
        sys.stdout.write(rows_as_json(rows) + "\n")
        return
    out.print(comparison_table(rows, str(real), str(sim)))


@app.command()
@friendly
def calibrate(
    traces: Optional[list[Path]] = typer.Argument(None, help="Timed step traces from `servesim validate record` "
                                                             "(builds a device profile for the served model)."),
    kernels: Optional[Path] = typer.Option(None, help="Refit the GPU kernel model from measurements in this "
                                           "directory (gemm.csv, context_attention.csv, generation_attention.csv, "
                                           "allreduce.csv, elementwise.csv; latencies in us)."),
    gpu: str = typer.Option("h100", help="Kernels: the GPU they were measured on (catalog name or device YAML)."),
    engine: str = typer.Option("vllm", help="Kernels: the engine whose kernels these are: vllm, sglang, trtllm."),
    name: Optional[str] = typer.Option(None, help="Traces: the profile name, e.g. cpu-local (then `simulate --gpu cpu-local`)."),
    model_config: Optional[Path] = typer.Option(None, help="Traces: the served model's Hugging Face config.json."),
    kv_cache_gib: Optional[float] = typer.Option(None, help="Traces: the server's KV cache memory (vLLM CPU: "
                                                             "VLLM_CPU_KVCACHE_SPACE)."),
    block_size: Optional[int] = typer.Option(None, help="Traces: the server's --block-size."),
    max_num_batched_tokens: Optional[int] = typer.Option(None, help="Traces: the server's --max-num-batched-tokens."),
    max_num_seqs: Optional[int] = typer.Option(None, help="Traces: the server's --max-num-seqs."),
    max_model_len: Optional[int] = typer.Option(None, help="Traces: the server's --max-model-len."),
    run: list[Path] = typer.Option([], "--run", help="Traces: measured load points (`servesim measure -o`) to fit "
                                                      "the server's own overheads; repeatable."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Kernels: the calibration file (default "
                                          "kernels.json). Traces: the profile (default: the profile directory, "
                                          "$SERVESIM_PROFILES or ~/.servesim/profiles)."),
):
    """Fit servesim's clocks to your own measurements: GPU kernel timings (`--kernels DIR`), or the step times of
    `servesim validate record` traces (a named device profile such as cpu-local)."""
    if kernels is not None and traces:
        raise ServesimError("give either --kernels DIR (GPU kernel timings) or step traces, not both")
    if kernels is not None:
        _calibrate_kernels(kernels, gpu, engine, output or Path("kernels.json"))
        return
    if not traces:
        raise ServesimError("nothing to calibrate: give --kernels DIR (GPU kernel measurements) or step traces from "
                            "`servesim validate record` (see `servesim calibrate --help`)")
    from servesim.validate.calibrate import Served, calibrate as calibrate_traces

    needed = {"--name": name, "--model-config": model_config, "--kv-cache-gib": kv_cache_gib, "--block-size": block_size,
              "--max-num-batched-tokens": max_num_batched_tokens, "--max-num-seqs": max_num_seqs,
              "--max-model-len": max_model_len}
    missing = [flag for flag, value in needed.items() if value is None]
    if missing:
        raise ServesimError(f"calibrating from traces needs {', '.join(missing)} (the served model and the server's settings)")
    served = Served(block_size, max_num_batched_tokens, max_num_seqs, max_model_len, kv_cache_gib)
    profile = calibrate_traces(name, traces, model_config, served, run,
                               warn=lambda w: err.print(f"[yellow]warning:[/] {w}", highlight=False),
                               progress=lambda line: out.print(f"  {line}", highlight=False))
    path = profile.save(output)
    m = profile.step_model
    out.print(f"step time = {m.overhead * 1e3:.3f} ms + {m.per_token * 1e6:.1f} us/token + {m.per_seq * 1e6:.1f} us/request "
              f"+ {m.per_attn_pair * 1e9:.3f} ns/attention pair + {m.per_kv_token * 1e9:.1f} ns/decode KV token", highlight=False)
    s = profile.serving
    out.print(f"server adds {s.per_step * 1e3:.2f} ms/step, {s.per_seq * 1e6:.1f} us/request/step, "
              f"{s.frontend_latency * 1e3:.1f} ms/request", highlight=False)
    out.print(f"profile {profile.name!r} written to {path}", highlight=False)


def _calibrate_kernels(kernels: Path, gpu: str, engine: str, output: Path) -> None:
    from servesim.perf.kernels.calibrate import calibrate_dir

    stats = calibrate_dir(kernels, gpu, engine, output)
    t = Table(title=f"kernel fit for {engine} on {gpu} (absolute error over your measurements)")
    for col in ("family", "measurements", "median error", "p90 error", "shipped model's median error"):
        t.add_column(col)
    for key, st in stats.items():
        shipped = st.get("shipped_median_abs_err")
        t.add_row(key, str(st["n"]), f"{st['median_abs_err'] * 100:.1f}%", f"{st['p90_abs_err'] * 100:.1f}%",
                  "-" if shipped is None else f"{shipped * 100:.1f}%")
    out.print(t)
    out.print(f"wrote {output}; use it with `servesim simulate --gpu {gpu} --engine {engine} --kernels {output}`",
              highlight=False)


validate_app = typer.Typer(no_args_is_help=True, help="Check servesim against the real vLLM, schedule for schedule.")
app.add_typer(validate_app, name="validate")


@validate_app.command("record")
@friendly
def validate_record(
    scenarios: list[Path] = typer.Argument(..., help="Scenario YAML files (docs/scenarios.md)."),
    output: Path = typer.Option(..., "-o", "--output", help="Trace file (one scenario) or directory (several)."),
    python: Optional[str] = typer.Option(None, help="Python of the vLLM validation environment "
                                                   "(default: $SERVESIM_VLLM_PYTHON, then .venv-vllm/bin/python)."),
):
    """Run each scenario on the real vLLM (vllm-cpu, in-process) and write its step-by-step schedule."""
    from servesim.validate.commands import record_command

    record_command(scenarios, output, python, out)


@validate_app.command("schedule")
@friendly
def validate_schedule(
    scenarios: list[Path] = typer.Argument(..., help="Scenario YAML files."),
    against: Path = typer.Option(..., "--against", help="The recorded trace (one scenario) or their directory."),
):
    """Simulate each scenario and compare with vLLM's recorded schedule; exit 1 at the first differing step."""
    from servesim.validate.commands import schedule_command

    raise typer.Exit(schedule_command(scenarios, against, out, err))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
