"""`make validate-cpu`: servesim's measure -> calibrate -> predict loop against a real vLLM server on this CPU.

1. Build the tiny random-weight Llama of validation/cpu/model.json (with a word-level tokenizer) in the vLLM
   validation environment.
2. Record step-time traces of validation/cpu/steps_*.yaml with the in-process vLLM (`servesim validate record`).
3. Start the real OpenAI server (vllm.entrypoints.openai.api_server) on loopback with that model.
4. Measure the calibration load points and the prediction load points (`servesim measure`), interleaved so
   that the background load of this shared machine falls on both alike.
5. Calibrate (`servesim calibrate`) on the traces and the calibration points only; save the profile cpu-local.
6. Simulate every prediction point with the profile and compare (`servesim compare`).
7. Write the error table, the command and the date into docs/validation.md (between the cpu-validation markers).

Target: median |relative error| <= 15% over TTFT p50, TPOT p50 and output throughput of the prediction points.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from rich.console import Console

from servesim.config import make_config
from servesim.measure.commands import measure_command
from servesim.metrics.compare import compare_runs
from servesim.metrics.io import write_result
from servesim.perf.profile import profile_dir
from servesim.simulate import run_simulation
from servesim.validate import record as rec
from servesim.validate.calibrate import Served, calibrate
from servesim.validate.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "validation" / "cpu"
DOC = ROOT / "docs" / "validation.md"
BEGIN, END = "<!-- cpu-validation:begin -->", "<!-- cpu-validation:end -->"
SERVED = Served(block_size=32, max_num_batched_tokens=2048, max_num_seqs=64, max_model_len=2048, kv_cache_gib=2)
MODEL_NAME = "tiny-llama"
LENGTHS = "uniform:32-256,16-128"  # prompt 32-256, output 16-128 tokens
# (name, role, load settings). Interleaved: calibration, prediction, calibration, ...
POINTS = [
    ("calib-c2", "calibrate", {"concurrency": 2, "requests": 24}),
    ("c1", "predict", {"concurrency": 1, "requests": 24}),
    ("calib-c8", "calibrate", {"concurrency": 8, "requests": 64}),
    ("c4", "predict", {"concurrency": 4, "requests": 48}),
    ("calib-c24", "calibrate", {"concurrency": 24, "requests": 120}),
    ("c16", "predict", {"concurrency": 16, "requests": 96}),
    ("c32", "predict", {"concurrency": 32, "requests": 160}),
    ("poisson-1.5", "predict", {"qps": 1.5, "requests": 60}),
    ("poisson-3", "predict", {"qps": 3.0, "requests": 90}),
    ("calib-poisson-0.75", "calibrate", {"qps": 0.75, "requests": 30}),
]
TARGETS = ("ttft_p50", "tpot_p50", "output_tokens_per_s")
QUIET_CORES = 0.8  # before each point, wait (a while) until other jobs use less than this many cores
QUIET_WAIT_S = 60
CLEAN_P90_CORES = 0.5  # a point during which other jobs used more than this in over 10% of its seconds ...
MAX_TRIES = 3  # ... is measured again, up to this many times; the run with the least interference is kept
HZ = os.sysconf("SC_CLK_TCK")

out = Console()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CpuMeter:
    """CPU time used by the whole machine, by the server's process group and by this client, so that what other
    jobs took (the noise) is measured, not guessed."""

    def __init__(self, server_pgid: int | None = None):
        self.pgid = server_pgid

    @staticmethod
    def _machine() -> float:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / HZ

    def _group(self) -> float:
        if self.pgid is None:
            return 0.0
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parts = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(parts[2]) == self.pgid:  # field 5, pgrp
                total += int(parts[11]) + int(parts[12])  # utime + stime
        return total / HZ

    def snapshot(self) -> tuple[float, float, float, float]:
        t = os.times()
        return time.time(), self._machine(), self._group(), t.user + t.system

    def others(self, start, end) -> float:
        """Cores used by other jobs between two snapshots."""
        wall = end[0] - start[0]
        return max(0.0, ((end[1] - start[1]) - (end[2] - start[2]) - (end[3] - start[3])) / wall) if wall > 0 else 0.0


class Interference(threading.Thread):
    """Samples, every second while a point runs, how many cores other jobs used in that second: bursts, which
    slow the server most while they last, show in the upper percentiles, not in the mean."""

    def __init__(self, meter: CpuMeter):
        super().__init__(daemon=True)
        self.meter = meter
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        last = self.meter.snapshot()
        while not self.done.wait(1.0):
            now = self.meter.snapshot()
            self.samples.append(self.meter.others(last, now))
            last = now

    def stop(self) -> tuple[float, float]:
        """(mean, 90th percentile) of the cores other jobs used."""
        self.done.set()
        self.join()
        values = np.asarray(self.samples or [0.0])
        return float(values.mean()), float(np.percentile(values, 90))


def wait_quiet(meter: CpuMeter, label: str) -> float:
    """Sample what other jobs use (our server is idle now); wait up to QUIET_WAIT_S for it to drop."""
    waited = 0
    while True:
        a = meter.snapshot()
        time.sleep(3)
        busy = meter.others(a, meter.snapshot())
        if busy < QUIET_CORES or waited >= QUIET_WAIT_S:
            break
        waited += 3
    if waited:
        out.print(f"  waited {waited} s before {label}: other jobs use {busy:.2f} cores", highlight=False)
    return busy


class Server:
    """The real vLLM OpenAI server, in its own process group so that it is stopped whole, by its id."""

    def __init__(self, python: str, model_dir: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(int(SERVED.kv_cache_gib)),
                   # one unbound compute thread, as the recorder's in-process timing runs use
                   VLLM_CPU_OMP_THREADS_BIND="nobind", OMP_NUM_THREADS="1")
        self.command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
                        "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(self.port),
                        "--enforce-eager", "--dtype", "bfloat16", "--block-size", str(SERVED.block_size),
                        "--max-num-seqs", str(SERVED.max_num_seqs),
                        "--max-num-batched-tokens", str(SERVED.max_num_batched_tokens),
                        "--max-model-len", str(SERVED.max_model_len), "--seed", "0"]
        self.log = open(log, "w")
        self.proc = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the vLLM server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(2)
        raise SystemExit(f"the vLLM server did not become healthy in {timeout:.0f} s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def point_config(settings: dict, seed: int):
    return make_config({}, lengths=LENGTHS, seed=seed, model_config=str(INPUTS / "model.json"),
                       block_size=SERVED.block_size, max_num_batched_tokens=SERVED.max_num_batched_tokens,
                       max_num_seqs=SERVED.max_num_seqs, max_model_len=SERVED.max_model_len, **settings)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "build" / "validate-cpu"))
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/validation.md")
    args = ap.parse_args()
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    (work / "real").mkdir(parents=True)
    python = rec.find_python()
    started = dt.datetime.now(dt.timezone.utc)

    out.print("[bold]1. model[/]")
    model_dir = work / "model"
    subprocess.run([python, str(rec.RECORDER), "--build-model", str(INPUTS / "model.json"), str(model_dir)],
                   check=True, capture_output=True)

    out.print("[bold]2. step-time traces (in-process vLLM)[/]")
    scenarios = sorted(INPUTS.glob("steps_*.yaml"))
    traces = [work / "traces" / f"{p.stem}.json" for p in scenarios]
    wait_quiet(CpuMeter(), "the step-time traces")
    rec.record([load_scenario(p) for p in scenarios], traces, python, work / "traces" / "record.log",
               progress=lambda line: out.print(f"  {line}", highlight=False))

    out.print("[bold]3-4. real server, load points[/]")
    server = Server(python, model_dir, work / "server.log")
    loads: dict[str, tuple[float, float, int]] = {}  # point -> (mean, p90 of other jobs' cores, tries)
    meter = CpuMeter(server.proc.pid)
    try:
        server.wait_ready()
        out.print(f"  server up at {server.url}", highlight=False)
        warm = point_config({"concurrency": 8, "requests": 32}, seed=999)
        measure_command(warm, server.url, MODEL_NAME, work / "warmup", 8192, None, 0, 600, out, out, quiet=True)
        for i, (name, role, settings) in enumerate(POINTS):
            tries = []
            for attempt in range(MAX_TRIES):
                wait_quiet(meter, name)
                target = work / "tries" / f"{name}-{attempt}"
                sampler = Interference(meter)
                sampler.start()
                summary = measure_command(point_config(settings, seed=i + 1), server.url, MODEL_NAME, target, 8192,
                                          None, 0, 600, out, out, quiet=True)
                mean, p90 = sampler.stop()
                tries.append((p90, mean, target))
                m = summary["metrics"]
                out.print(f"  {name:18s} ({role}): TTFT p50 {m['ttft_p50'] * 1e3:7.1f} ms, TPOT p50 "
                          f"{m['tpot_p50'] * 1e3:6.1f} ms, {m['output_tokens_per_s']:6.1f} tok/s, {m['duration_s']:5.1f} s;"
                          f" other jobs used {mean:.2f} cores on average, {p90:.2f} at p90", highlight=False)
                if p90 <= CLEAN_P90_CORES:
                    break
            p90, mean, kept = min(tries)
            shutil.copytree(kept, work / "real" / name)
            loads[name] = (mean, p90, len(tries))
    finally:
        server.stop()

    out.print("[bold]5. calibrate[/]")
    calib_runs = [work / "real" / name for name, role, _ in POINTS if role == "calibrate"]
    profile = calibrate("cpu-local", traces, INPUTS / "model.json", SERVED, calib_runs,
                        progress=lambda line: out.print(f"  {line}", highlight=False))
    profile.provenance["command"] = "make validate-cpu"
    profile_path = profile.save(work / "cpu-local.yaml")
    profile.save(profile_dir() / "cpu-local.yaml")

    out.print("[bold]6. predict and compare[/]")
    results = []
    for i, (name, role, settings) in enumerate(POINTS):
        if role != "predict":
            continue
        cfg = point_config(settings, seed=i + 1)
        cfg.gpu = str(profile_path)
        write_result(run_simulation(cfg), work / "sim" / name)
        rows = compare_runs(work / "real" / name, work / "sim" / name)
        results.append((name, settings, rows))
    errors = [e for _, _, rows in results for k, _, _, e in rows if k in TARGETS]
    median = float(np.median(np.abs(errors)))
    for name, settings, rows in results:
        cells = {k: e for k, _, _, e in rows}
        out.print(f"  {name:12s} TTFT p50 {cells['ttft_p50'] * 100:+6.1f}%  TPOT p50 {cells['tpot_p50'] * 100:+6.1f}%  "
                  f"throughput {cells['output_tokens_per_s'] * 100:+6.1f}%", highlight=False)
    verdict = "meets" if median <= 0.15 else "misses"
    out.print(f"[bold]median |error| over TTFT p50, TPOT p50, output throughput: {median * 100:.1f}% "
              f"({verdict} the 15% target)[/]")
    (work / "results.json").write_text(json.dumps({
        "started_utc": started.isoformat(timespec="seconds"), "median_abs_rel_error": median,
        "points": {name: {k: {"real": a, "predicted": b, "rel_error": e} for k, a, b, e in rows} for name, _, rows in results},
        "loads": loads, "profile": str(profile_path)}, indent=1))
    if not args.no_doc:
        write_doc(started, loads, profile, results, median)
        out.print(f"wrote the CPU section of {DOC.relative_to(ROOT)}", highlight=False)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_doc(started, loads, profile, results, median) -> None:
    m, s = profile.step_model, profile.serving
    fit = profile.provenance["step_fit"]
    lines = [
        BEGIN,
        f"Run: `make validate-cpu` on {started:%Y-%m-%d %H:%M} UTC; {_cpu_name()}, {os.cpu_count()} cores shared with other "
        f"jobs; vLLM {profile.provenance.get('vllm_version')} (vllm-cpu), "
        f"servesim {profile.provenance['servesim_version']}.",
        "",
        f"Server: `python -m vllm.entrypoints.openai.api_server --model <validation/cpu/model.json, random weights> "
        f"--enforce-eager --dtype bfloat16 --block-size {SERVED.block_size} --max-num-seqs {SERVED.max_num_seqs} "
        f"--max-num-batched-tokens {SERVED.max_num_batched_tokens} --max-model-len {SERVED.max_model_len}` with "
        f"`VLLM_CPU_KVCACHE_SPACE={int(SERVED.kv_cache_gib)}`, one unbound OpenMP thread. Workload at every point: "
        f"`--lengths {LENGTHS}`, salted prompts, `ignore_eos`.",
        "",
        f"Calibration (never the predicted points): step times of {fit['steps']} in-process vLLM steps "
        f"(validation/cpu/steps_*.yaml; {fit['steps'] - fit['kept']} stalls dropped; median |error| of the fit "
        f"{fit['median_abs_rel_error'] * 100:.1f}%) and the load points "
        f"{', '.join(n for n, r, _ in POINTS if r == 'calibrate')} for the server's own overheads. Fitted: step = "
        f"{m.overhead * 1e3:.2f} ms + {m.per_token * 1e6:.0f} us/token + {m.per_seq * 1e6:.0f} us/request + "
        f"{m.per_attn_pair * 1e9:.2f} ns/attention pair + {m.per_kv_token * 1e9:.0f} ns/decode KV token; the server adds "
        f"{s.per_step * 1e3:.2f} ms/step, {s.per_seq * 1e6:.0f} us/request/step and {s.frontend_latency * 1e3:.1f} ms "
        "of frontend latency per request.",
        "",
        "| load point | TTFT p50 real / predicted (ms) | error | TPOT p50 real / predicted (ms) | error | output tok/s real / predicted | error | other jobs' cores, mean / p90 (tries) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, settings, rows in results:
        c = {k: (a, b, e) for k, a, b, e in rows}
        load = settings.get("concurrency")
        label = f"closed loop, concurrency {load}" if load else f"Poisson {settings['qps']} req/s"
        t, p, o = c["ttft_p50"], c["tpot_p50"], c["output_tokens_per_s"]
        lines.append(f"| {name}: {label}, {settings['requests']} requests | {t[0] * 1e3:.1f} / {t[1] * 1e3:.1f} | "
                     f"{t[2] * 100:+.1f}% | {p[0] * 1e3:.1f} / {p[1] * 1e3:.1f} | {p[2] * 100:+.1f}% | "
                     f"{o[0]:.1f} / {o[1]:.1f} | {o[2] * 100:+.1f}% | {loads[name][0]:.2f} / {loads[name][1]:.2f} ({loads[name][2]}) |")
    lines += ["", f"**Median |relative error| over the {3 * len(results)} numbers above: {median * 100:.1f}%** "
                  f"(target 15%: {'met' if median <= 0.15 else 'missed'}).", "",
              "All metrics per point (p50/p90/p99 of TTFT, TPOT, ITL, E2E; throughput):", ""]
    lines += ["| load point | " + " | ".join(k for k, *_ in results[0][2]) + " |",
              "|---|" + "---|" * len(results[0][2])]
    for name, _, rows in results:
        lines.append(f"| {name} | " + " | ".join("-" if e != e else f"{e * 100:+.0f}%" for _, _, _, e in rows) + " |")
    lines.append(END)
    text = DOC.read_text() if DOC.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text += "\n" + "\n".join(lines) + "\n"
    DOC.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
