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
        out.print(f"servesim {__version__}")
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
    tp: Optional[int] = typer.Option(None, help="Tensor-parallel size."),
    dtype: Optional[str] = typer.Option(None, help="Weight dtype: bf16 or fp8."),
    kv_cache_dtype: Optional[str] = typer.Option(None, help="KV cache dtype (default: the weights')."),
    policy: Optional[str] = typer.Option(None, help="Scheduling policy."),
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
):
    """Simulate one vLLM replica serving a workload; print latency, throughput and SLO goodput."""
    from servesim.config import load_config, make_config
    from servesim.metrics.io import _clean, write_result
    from servesim.report.terminal import LazyProgress, summary_tables
    from servesim.simulate import run_simulation
    from servesim.workload.build import build_workload

    file_values = load_config(config) if config else {}
    cfg = make_config(
        file_values, model=model, model_config=str(model_config) if model_config else None, gpu=gpu, tp=tp,
        dtype=dtype, kv_cache_dtype=kv_cache_dtype, policy=policy, workload=workload,
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
    if output:
        write_result(result, output)
    if json_out:
        sys.stdout.write(json.dumps(_clean(result.summary), indent=1, sort_keys=True) + "\n")
        return
    if quiet:
        return
    title = (f"{result.meta['model']['name']} on {result.meta['device']} TP={cfg.tp}, {result.workload.name}: "
             f"{len(wl)} requests")
    out.print(f"[bold]{title}[/]")
    for table in summary_tables(result.summary):
        out.print(table)
    out.print(f"simulated {len(wl)} requests in {wall:.2f} s wall ({len(wl) / wall:,.0f} req/s)", highlight=False)
    if output:
        out.print(f"results in {output}/ (summary.json, requests.parquet, steps.parquet, config.yaml)", highlight=False)


@app.command()
@friendly
def models():
    """List the bundled models."""
    from servesim.models.catalog import list_models

    t = Table(title="bundled models (--model NAME or Hugging Face id; --model-config FILE for others)")
    for col in ("name", "hugging face id", "params", "layers", "hidden", "heads/kv", "KV per token (bf16)"):
        t.add_column(col)
    for m in list_models():
        t.add_row(m.name, m.hf_id, f"{m.num_params / 1e9:.2f}B", str(m.num_layers), str(m.hidden_size),
                  f"{m.num_heads}/{m.num_kv_heads}", f"{m.kv_bytes_per_token() / 1024:.0f} KiB")
    out.print(t)


@app.command()
@friendly
def gpus():
    """List the GPU catalog."""
    from servesim.hardware.catalog import list_devices

    t = Table(title="GPUs (--gpu NAME, or a device YAML file)")
    for col in ("name", "BF16 TFLOP/s", "FP8 TFLOP/s", "memory GB", "bandwidth TB/s", "link", "link GB/s"):
        t.add_column(col)
    for d in list_devices():
        t.add_row(d.name, f"{d.bf16_flops / 1e12:.0f}", f"{d.fp8_flops / 1e12:.0f}" if d.has_fp8 else "-",
                  f"{d.mem_bytes / 1e9:.0f}", f"{d.mem_bandwidth / 1e12:.2f}", d.link_kind, f"{d.link_bandwidth / 1e9:.0f}")
    out.print(t)


@app.command()
@friendly
def workloads():
    """List the built-in workloads and the traces they were fitted from."""
    from servesim.workload.presets import presets

    t = Table(title="built-in workloads (--workload NAME)")
    for col in ("name", "rate req/s", "burstiness CV", "prompt mean", "output mean", "prefix reuse", "fitted from"):
        t.add_column(col)
    for name, p in presets().items():
        reuse = p.get("prefix", {}).get("reuse_probability")
        t.add_row(name, "-" if p["rate"] is None else f"{p['rate']:.2f}", f"{p['cv']:.2f}", f"{p['prompt_mean']:.0f}",
                  f"{p['output_mean']:.0f}", "-" if reuse is None else f"{reuse * 100:.0f}%", p["source"])
    out.print(t)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
