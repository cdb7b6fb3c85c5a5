"""Bundled model specs (numbers from each model's public Hugging Face config.json) and `--model-config` loading."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from servesim.errors import ServesimError, choices_error
from servesim.models.spec import ModelSpec, model_from_hf_config


@cache
def _bundled() -> dict[str, dict]:
    folder = resources.files("servesim.models") / "configs"
    return {p.name.removesuffix(".json"): json.loads(p.read_text()) for p in folder.iterdir() if p.name.endswith(".json")}


def list_models() -> list[ModelSpec]:
    return [get_model(name) for name in sorted(_bundled())]


def get_model(name: str) -> ModelSpec:
    """A bundled model by short name (`llama-3.1-8b`) or Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`)."""
    configs = _bundled()
    key = name.lower()
    if key in configs:
        return model_from_hf_config(configs[key], name=key, where=f"bundled {key}.json")
    for short, config in configs.items():
        hf_id = config["_name_or_path"].lower()
        if key in (hf_id, hf_id.removesuffix("-instruct"), hf_id.split("/")[-1], hf_id.split("/")[-1].removesuffix("-instruct")):
            return model_from_hf_config(config, name=short, where=f"bundled {short}.json")
    raise choices_error("model", name, sorted(configs), where="use --model-config path/config.json for others")


def load_model_config(path: str | Path) -> ModelSpec:
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ServesimError(f"model config {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ServesimError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(config, dict):
        raise ServesimError(f"{path}: expected a JSON object (a Hugging Face config.json)")
    return model_from_hf_config(config, name=config.get("_name_or_path") or path.parent.name, where=str(path))
