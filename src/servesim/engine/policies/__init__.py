"""Scheduling policies: who gets how many tokens in each step. Each is a small class over ReplicaEngine."""

from servesim.engine.policies.vllm_v1 import VllmV1Policy
from servesim.errors import choices_error

POLICIES = {VllmV1Policy.name: VllmV1Policy}


def make_policy(name: str, **options):
    if name not in POLICIES:
        raise choices_error("policy", name, sorted(POLICIES))
    return POLICIES[name](**options)


__all__ = ["POLICIES", "make_policy", "VllmV1Policy"]
