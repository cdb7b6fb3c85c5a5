"""What the engine asks a policy each step. Every policy derives from this class so that, compiled, the engine
calls its policy natively (through the class's method table) instead of through Python's attribute lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.columns import widened, zeros_column

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class Schedule:
    """One step's schedule: request `rids[i]` gets `tokens[i]` new tokens, for i < n, in the order given.

    The engine keeps one and clears it (n = 0) before every step. Its two columns are written in place: compiled,
    unboxed vecs, so scheduling a request allocates nothing (a (request, tokens) tuple per request did)."""

    def __init__(self, capacity: int) -> None:
        self.rids = zeros_column(capacity)
        self.tokens = zeros_column(capacity)
        self.n = 0

    def add(self, rid: int, tokens: int) -> None:
        i = self.n
        if i == len(self.rids):  # more requests than ever before in one step
            self.rids, self.tokens = widened(self.rids), widened(self.tokens)
        self.rids[i] = rid
        self.tokens[i] = tokens
        self.n = i + 1

    def remove(self, rid: int) -> None:
        """Take `rid` out if it is scheduled (a preempted victim loses its tokens); the others keep their order."""
        rids, tokens = self.rids, self.tokens
        n = self.n
        i = 0
        while i < n and rids[i] != rid:
            i += 1
        if i == n:
            return
        while i + 1 < n:
            rids[i], tokens[i] = rids[i + 1], tokens[i + 1]
            i += 1
        self.n = n - 1

    def total(self) -> int:
        """Tokens scheduled so far."""
        tokens = self.tokens
        out = 0
        for i in range(self.n):
            out += tokens[i]
        return out

    def pairs(self) -> list[tuple[int, int]]:
        """[(request, tokens)], in order: the engine's schedule log and the tests read this form."""
        rids, tokens = self.rids, self.tokens
        return [(rids[i], tokens[i]) for i in range(self.n)]


class Policy:
    name: ClassVar[str] = ""

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        """Who gets how many tokens this step: `out.add(request, tokens)` for each, in order (`out` is empty)."""
        raise NotImplementedError

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        """True only when the next steps certainly decode every running request and nothing else happens.

        Once True, it must stay True while running requests only finish and nobody waits: the engine does not ask
        again after a span that ended in finishes with an empty queue (every policy here passes; the property
        tests compare spans with single steps and would catch one that does not)."""
        return False
