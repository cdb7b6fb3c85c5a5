"""What the engine asks a policy each step. Every policy derives from this class so that, compiled, the engine
calls its policy natively (through the class's method table) instead of through Python's attribute lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class Policy:
    name: ClassVar[str] = ""

    def schedule(self, eng: ReplicaEngine, now: float) -> list[tuple[int, int]]:
        """Who gets how many tokens this step: [(request, tokens)]."""
        raise NotImplementedError

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        """True only when the next steps certainly decode every running request and nothing else happens."""
        return False
