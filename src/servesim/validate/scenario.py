"""Schedule-fidelity scenarios: a model, vLLM engine settings and a list of requests, in YAML (docs/scenarios.md).

A scenario is run twice: by the real vLLM (validate/vllm_recorder.py, in the validation environment) and by
servesim's engine; the two step-by-step schedules must be identical. Prompt token ids are drawn from the seed
so that the requests of a prefix group really share their first `prefix` tokens and nothing after them; the
simulator gets the same sharing as chained prefix-block ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from servesim.engine.config import EngineConfig
from servesim.errors import ServesimError
from servesim.models.spec import ModelSpec, model_from_hf_config

GiB = 1024**3
FIRST_TOKEN_ID = 3  # keep clear of the ids tokenizers reserve for bos/eos/pad

# The random-weight Llama every scenario runs unless it says otherwise. head_dim 64: the CPU attention
# kernels reject small head sizes (16 fails).
TINY_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}

TOP_KEYS = ("name", "description", "seed", "model", "engine", "requests")
ENGINE_KEYS = {
    "block_size": int, "num_gpu_blocks": int, "max_num_batched_tokens": int, "max_num_seqs": int,
    "max_model_len": int, "enable_prefix_caching": bool, "long_prefill_token_threshold": int, "kv_cache_gib": int,
}
ENGINE_DEFAULTS = {"max_num_batched_tokens": 2048, "max_num_seqs": 128, "max_model_len": 1024,
                   "enable_prefix_caching": True, "long_prefill_token_threshold": 0, "kv_cache_gib": 1}
REQUEST_KEYS = ("prompt", "output", "group", "prefix", "arrival_step")
GENERATE_KEYS = ("generate", "prompt", "output", "arrival_step", "groups", "prefix")
CPU_BLOCK_MULTIPLE = 32  # vLLM's CPU backend takes block sizes that are multiples of 32


@dataclass
class Scenario:
    name: str
    description: str
    path: str
    seed: int
    model_config: dict  # the Hugging Face config the recorder builds a random-weight model from
    engine: EngineConfig
    kv_cache_gib: int
    prompt_len: list[int]
    output_len: list[int]
    arrival_step: list[int]
    group: list[str | None]
    prefix_len: list[int]
    token_ids: list[list[int]]

    @property
    def n(self) -> int:
        return len(self.prompt_len)

    def prefix_ids(self) -> list[tuple | None]:
        """Chained ids of each request's fully shared blocks, one id per block (prefix_block_tokens = block_size)."""
        bs = self.engine.block_size
        return [tuple((g, j) for j in range(p // bs)) if g is not None else None
                for g, p in zip(self.group, self.prefix_len)]

    def engine_dict(self) -> dict:
        e = self.engine
        return {"block_size": e.block_size, "num_gpu_blocks": e.num_gpu_blocks,
                "max_num_batched_tokens": e.max_num_batched_tokens, "max_num_seqs": e.max_num_seqs,
                "max_model_len": e.max_model_len, "enable_prefix_caching": e.enable_prefix_caching,
                "long_prefill_token_threshold": e.long_prefill_token_threshold, "kv_cache_gib": self.kv_cache_gib}

    def digest(self) -> str:
        """Names exactly what vLLM is asked to run: model, engine, tokens, output lengths and arrival steps."""
        doc = {"model": self.model_config, "engine": self.engine_dict(), "tokens": self.token_ids,
               "output": self.output_len, "arrival_step": self.arrival_step}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def recorder_job(self) -> dict:
        """What the recorder needs, as plain JSON: it imports nothing from servesim."""
        return {"name": self.name, "digest": self.digest(), "model": self.model_config, "engine": self.engine_dict(),
                "seed": self.seed,
                "requests": [{"tokens": t, "output": o, "arrival_step": a}
                             for t, o, a in zip(self.token_ids, self.output_len, self.arrival_step)]}


# --- reading ---


def _lines(path: Path, text: str) -> dict[tuple, int]:
    """Line of each mapping key and sequence item, so errors can name file:line."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ServesimError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML ({getattr(e, 'problem', e)})") from None
    lines: dict[tuple, int] = {}

    def walk(n, at):
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                lines[at + (str(k.value),)] = k.start_mark.line + 1
                walk(v, at + (str(k.value),))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, at + (i,))

    if node is not None:
        walk(node, ())
    return lines


class _Reader:
    def __init__(self, path: Path, lines: dict[tuple, int]):
        self.path, self.lines = path, lines

    def where(self, *at) -> str:
        for k in range(len(at), -1, -1):
            if at[:k] in self.lines:
                return f"{self.path}:{self.lines[at[:k]]}"
        return str(self.path)

    def fail(self, at: tuple, message: str):
        raise ServesimError(f"{self.where(*at)}: {message}")

    def mapping(self, value, at: tuple, valid) -> dict:
        if not isinstance(value, dict):
            self.fail(at, f"expected a mapping with keys {', '.join(valid)}, got {value!r}")
        for key in value:
            if key not in valid:
                self.fail(at + (str(key),), f"unknown field {key!r}; valid fields: {', '.join(valid)}")
        return value

    def integer(self, value, at: tuple, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(at, f"{at[-1]} must be an integer >= {minimum}, got {value!r}")
        return value

    def int_range(self, value, at: tuple, minimum: int, rng: np.random.Generator) -> int:
        """N or [LO, HI] (uniform, inclusive) drawn from rng."""
        if isinstance(value, list):
            if len(value) != 2:
                self.fail(at, f"{at[-1]} must be N or [LOW, HIGH], got {value!r}")
            lo, hi = (self.integer(v, at, minimum) for v in value)
            if lo > hi:
                self.fail(at, f"{at[-1]}: LOW {lo} > HIGH {hi}")
            return int(rng.integers(lo, hi + 1))
        return self.integer(value, at, minimum)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ServesimError(f"scenario file {str(path)!r} does not exist") from None
    r = _Reader(path, _lines(path, text))
    raw = yaml.safe_load(text)
    r.mapping(raw, (), TOP_KEYS)
    seed = r.integer(raw.get("seed", 0), ("seed",))
    model_config = _model_config(raw.get("model"), r, path)
    spec = model_from_hf_config(model_config, name="scenario model", where=r.where("model"))
    engine, kv_gib = _engine(raw.get("engine"), r, spec)
    if "requests" not in raw:
        r.fail((), "missing field 'requests' (a list of {prompt, output, ...} or {generate: N, ...} items)")
    reqs = _requests(raw["requests"], r, seed, engine)
    tokens = _token_ids(reqs, seed, model_config["vocab_size"])
    return Scenario(
        name=str(raw.get("name") or path.stem), description=str(raw.get("description", "")), path=str(path),
        seed=seed, model_config=model_config, engine=engine, kv_cache_gib=kv_gib,
        prompt_len=[q["prompt"] for q in reqs], output_len=[q["output"] for q in reqs],
        arrival_step=[q["arrival_step"] for q in reqs], group=[q["group"] for q in reqs],
        prefix_len=[q["prefix"] for q in reqs], token_ids=tokens,
    )


def _model_config(value: Any, r: _Reader, path: Path) -> dict:
    """The tiny Llama, with the scenario's HF config values on top, or a config.json named by path."""
    if value is None:
        return dict(TINY_LLAMA)
    if isinstance(value, str):
        file = (path.parent / value) if not Path(value).is_absolute() else Path(value)
        if file.is_dir():
            file = file / "config.json"
        try:
            loaded = json.loads(file.read_text())
        except FileNotFoundError:
            r.fail(("model",), f"model config {str(file)!r} does not exist")
        except json.JSONDecodeError as e:
            r.fail(("model",), f"{file}:{e.lineno}: not valid JSON ({e.msg})")
        if loaded.get("architectures", ["LlamaForCausalLM"])[0] != "LlamaForCausalLM":
            r.fail(("model",), f"the recorder builds LlamaForCausalLM models; {file} is {loaded['architectures'][0]}")
        return {**TINY_LLAMA, **{k: v for k, v in loaded.items() if not k.startswith("_")}}
    if not isinstance(value, dict):
        r.fail(("model",), f"model must be a mapping of Hugging Face config values or a path, got {value!r}")
    if value.get("architectures", ["LlamaForCausalLM"]) != ["LlamaForCausalLM"]:
        r.fail(("model", "architectures"), "the recorder builds LlamaForCausalLM models only")
    return {**TINY_LLAMA, **value}


def _engine(value: Any, r: _Reader, model: ModelSpec) -> tuple[EngineConfig, int]:
    if value is None:
        r.fail((), "missing field 'engine' (block_size and num_gpu_blocks are required)")
    r.mapping(value, ("engine",), list(ENGINE_KEYS))
    for key in ("block_size", "num_gpu_blocks"):
        if key not in value:
            r.fail(("engine",), f"missing engine field {key!r}")
    e = {**ENGINE_DEFAULTS, **value}
    for key, kind in ENGINE_KEYS.items():
        at = ("engine", key)
        if kind is bool:
            if not isinstance(e[key], bool):
                r.fail(at, f"{key} must be true or false, got {e[key]!r}")
        else:
            r.integer(e[key], at, 0 if key == "long_prefill_token_threshold" else 1)
    bs = e["block_size"]
    if bs % CPU_BLOCK_MULTIPLE:
        r.fail(("engine", "block_size"), f"block_size {bs} is not a multiple of {CPU_BLOCK_MULTIPLE}, which vLLM's CPU backend requires")
    if e["max_model_len"] > model.max_position_embeddings:
        r.fail(("engine", "max_model_len"), f"max_model_len {e['max_model_len']} exceeds the model's "
                                            f"max_position_embeddings {model.max_position_embeddings}")
    block_bytes = bs * model.kv_bytes_per_token("bf16")
    need = e["num_gpu_blocks"] * block_bytes
    if need > e["kv_cache_gib"] * GiB:
        r.fail(("engine", "num_gpu_blocks"),
               f"num_gpu_blocks {e['num_gpu_blocks']} need {need / GiB:.2f} GiB of KV cache ({block_bytes / 1024:.0f} KiB "
               f"a block) but kv_cache_gib is {e['kv_cache_gib']}; lower num_gpu_blocks "
               f"(at most {int(e['kv_cache_gib'] * GiB // block_bytes)}) or raise kv_cache_gib")
    cfg = EngineConfig(num_gpu_blocks=e["num_gpu_blocks"], block_size=bs,
                       max_num_batched_tokens=e["max_num_batched_tokens"], max_num_seqs=e["max_num_seqs"],
                       max_model_len=e["max_model_len"], enable_prefix_caching=e["enable_prefix_caching"],
                       long_prefill_token_threshold=e["long_prefill_token_threshold"], reject_overlong=False)
    try:
        cfg.validate()
    except ServesimError as err:
        r.fail(("engine",), str(err))
    return cfg, e["kv_cache_gib"]


def _requests(items: Any, r: _Reader, seed: int, engine: EngineConfig) -> list[dict]:
    if not isinstance(items, list) or not items:
        r.fail(("requests",), "requests must be a non-empty list")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    out: list[dict] = []
    for i, item in enumerate(items):
        at = ("requests", i)
        if isinstance(item, dict) and "generate" in item:
            r.mapping(item, at, GENERATE_KEYS)
            count = r.integer(item["generate"], at + ("generate",), 1)
            groups = item.get("groups")
            if groups is not None and (not isinstance(groups, list) or not groups):
                r.fail(at + ("groups",), f"groups must be a non-empty list of group names, got {groups!r}")
            for _ in range(count):
                q = {"prompt": r.int_range(item.get("prompt"), at + ("prompt",), 1, rng),
                     "output": r.int_range(item.get("output"), at + ("output",), 1, rng),
                     "arrival_step": r.int_range(item.get("arrival_step", 0), at + ("arrival_step",), 0, rng),
                     "group": None, "prefix": 0}
                if groups is not None:
                    q["group"] = str(groups[int(rng.integers(len(groups)))])
                    q["prefix"] = r.int_range(item.get("prefix"), at + ("prefix",), 1, rng)
                    q["prefix"] = min(q["prefix"], q["prompt"] - 1)  # a drawn prefix never swallows the prompt
                    if q["prefix"] == 0:
                        q["group"] = None
                out.append(_check_request(q, r, at, len(out), engine))
        else:
            r.mapping(item, at, REQUEST_KEYS)
            for key in ("prompt", "output"):
                if key not in item:
                    r.fail(at, f"request {len(out)} is missing {key!r}")
            q = {"prompt": r.integer(item["prompt"], at + ("prompt",), 1),
                 "output": r.integer(item["output"], at + ("output",), 1),
                 "arrival_step": r.integer(item.get("arrival_step", 0), at + ("arrival_step",), 0),
                 "group": None if item.get("group") is None else str(item["group"]),
                 "prefix": r.integer(item.get("prefix", 0), at + ("prefix",), 0)}
            if (q["group"] is None) != (q["prefix"] == 0):
                r.fail(at, f"request {len(out)}: give both 'group' and 'prefix' (a shared prefix) or neither")
            out.append(_check_request(q, r, at, len(out), engine))
    return out


def _check_request(q: dict, r: _Reader, at: tuple, index: int, engine: EngineConfig) -> dict:
    total = q["prompt"] + q["output"]
    if total > engine.max_model_len:
        r.fail(at, f"request {index}: prompt {q['prompt']} + output {q['output']} = {total} tokens is longer than "
                   f"max_model_len {engine.max_model_len}")
    if q["group"] is not None and q["prefix"] >= q["prompt"]:
        r.fail(at, f"request {index}: prefix {q['prefix']} must be shorter than the prompt ({q['prompt']} tokens): "
                   "the last prompt token is always the request's own")
    return q


def _token_ids(reqs: list[dict], seed: int, vocab: int) -> list[list[int]]:
    """Each group draws one base sequence; a member copies its first `prefix` tokens, then diverges at once: its
    next token differs from the base there and from every other member's with the same prefix length."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    longest: dict[str, int] = {}
    for q in reqs:
        if q["group"] is not None:
            longest[q["group"]] = max(longest.get(q["group"], 0), q["prefix"])
    bases = {g: rng.integers(FIRST_TOKEN_ID, vocab, n + 1) for g, n in sorted(longest.items())}
    taken: dict[tuple[str, int], set[int]] = {}
    out = []
    for q in reqs:
        p = q["prefix"]
        own = rng.integers(FIRST_TOKEN_ID, vocab, q["prompt"] - p)
        if q["group"] is not None:
            base = bases[q["group"]]
            used = taken.setdefault((q["group"], p), {int(base[p])})
            if len(used) >= vocab - FIRST_TOKEN_ID:
                raise ServesimError(f"group {q['group']!r} has more members with prefix {p} than the vocabulary "
                                    f"({vocab}) can tell apart")
            while int(own[0]) in used:
                own[0] = rng.integers(FIRST_TOKEN_ID, vocab)
            used.add(int(own[0]))
            tokens = np.concatenate([base[:p], own])
        else:
            tokens = own
        out.append([int(t) for t in tokens])
    return out
