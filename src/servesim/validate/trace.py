"""Schedule traces recorded from the real vLLM by validate/vllm_recorder.py: reading them and checking provenance."""

from __future__ import annotations

import json
from pathlib import Path

from servesim.errors import ServesimError

FORMAT = "servesim-vllm-trace/1"
MODELLED_VLLM = "0.32.0"  # the vLLM release whose scheduler engine/policies/vllm_v1.py reproduces


def load_trace(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ServesimError(f"trace {str(path)!r} does not exist; record one with `servesim validate record`") from None
    except json.JSONDecodeError as e:
        raise ServesimError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("steps"), list):
        raise ServesimError(f"{path}: not a servesim vLLM trace (expected \"format\": \"{FORMAT}\" and a \"steps\" list)")
    for i, step in enumerate(doc["steps"]):
        if not isinstance(step, dict) or not isinstance(step.get("tokens"), dict) or not isinstance(step.get("preempted"), list):
            raise ServesimError(f"{path}: step {i} lacks a \"tokens\" mapping or a \"preempted\" list")
    return doc


def version_warning(trace: dict, path: str | Path) -> str | None:
    """A trace from another vLLM release may legitimately differ: say so, naming both versions."""
    recorded = trace.get("vllm_version", "unknown")
    if recorded != MODELLED_VLLM:
        return (f"{path} was recorded with vLLM {recorded}, but servesim's vllm-v1 policy models vLLM "
                f"{MODELLED_VLLM}; differences may be vLLM's changes, not servesim's errors")
    return None


def digest_warning(trace: dict, path: str | Path, digest: str) -> str | None:
    if trace.get("scenario_digest") not in (None, digest):
        return (f"{path} was recorded from a different version of this scenario (digest {trace['scenario_digest']}, "
                f"now {digest}); re-record it with `servesim validate record`")
    return None
