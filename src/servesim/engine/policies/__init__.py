"""Scheduling policies: who gets how many tokens in each step. Each is a small class over ReplicaEngine.

A policy derives from `base.Policy`: `schedule(engine, now, out)` (`out.add(request, tokens)` for each, in order) and
`decode_span_ok(engine) -> bool` (True only when it can certify that the next steps decode every running
request and nothing else can happen). It may have `engine_defaults(max_model_len) -> dict` (engine settings it implies unless the user gives them)
and `make_waiting_queue(requests)` (a waiting order other than first come first served).
"""

import inspect

from servesim.engine.policies.fair import FairPolicy
from servesim.engine.policies.orca import OrcaPolicy
from servesim.engine.policies.priority import PriorityPolicy
from servesim.engine.policies.sarathi import SarathiPolicy
from servesim.engine.policies.sglang import SGLangPolicy
from servesim.engine.policies.splitfuse import SplitFusePolicy
from servesim.engine.policies.static import StaticPolicy
from servesim.engine.policies.vllm_v1 import VllmV1Policy
from servesim.errors import ServesimError, choices_error

POLICIES = {
    cls.name: cls
    for cls in (VllmV1Policy, SarathiPolicy, SplitFusePolicy, OrcaPolicy, StaticPolicy, SGLangPolicy, PriorityPolicy,
                FairPolicy)
}


def policy_class(name: str):
    if name not in POLICIES:
        raise choices_error("policy", name, list(POLICIES))
    return POLICIES[name]


def make_policy(name: str, **options):
    cls = policy_class(name)
    known = [k for k in inspect.signature(cls).parameters]
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(known) if known else "none"
        raise ServesimError(f"policy {name} has no option {unknown[0]!r}; its options: {valid}")
    return cls(**options)


def parse_policy_options(text: str | None, where: str = "--policy-options") -> dict[str, float]:
    """`KEY=VALUE,...` with numeric values, e.g. `new_token_ratio=0.5`."""
    options: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        try:
            options[key.strip().replace("-", "_")] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ServesimError(f"{where} {text!r}: write KEY=NUMBER,... e.g. new_token_ratio=0.5")
    return options


def policy_engine_defaults(name: str, max_model_len: int) -> dict:
    """Engine settings a policy implies (its chunk size, no chunking, ...) where the user gave none."""
    defaults = getattr(policy_class(name), "engine_defaults", None)
    return defaults(max_model_len) if defaults else {}


__all__ = ["POLICIES", "make_policy", "parse_policy_options", "policy_class", "policy_engine_defaults", "VllmV1Policy"]
