"""Pieces every policy other than vLLM v1's reuses: slots for running requests with recompute preemption,
admission of a waiting request, and the test that the next step is a pure decode of every running request.

They fill the step's Schedule in order; a preempted request that was already given tokens this step is taken out
of it again (Schedule.remove).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from servesim.engine.requests import RUNNING

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine
    from servesim.engine.policies.base import Schedule


def last_running(eng: ReplicaEngine) -> int:
    """vLLM's victim: the request admitted last."""
    return eng.running[-1]


def need(eng: ReplicaEngine, rid: int) -> int:
    """Tokens a running request wants: 1 when it decodes, more while (re)computing its prompt."""
    req = eng.req
    return req.prompt_len[rid] + req.num_output[rid] - req.num_computed[rid]


def chunk(eng: ReplicaEngine, rid: int, budget: int) -> int:
    """At most `budget` of a running request's wanted tokens, never past max_model_len (as vLLM caps it)."""
    req = eng.req
    computed = req.num_computed[rid]
    n = req.prompt_len[rid] + req.num_output[rid] - computed  # need(), inlined
    # min(n, budget, limit) in two compares: compiled, a three-argument min() is a generic call
    if budget < n:
        n = budget
    limit = eng.cfg.max_model_len - computed - 1
    return limit if limit < n else n


def give(eng: ReplicaEngine, rid: int, n: int, scheduled: Schedule, victim: Callable = last_running) -> bool:
    """Slots for `n` more tokens of running request `rid`, preempting victims until they fit (recompute).
    A victim already scheduled this step loses its tokens. False if `rid` itself had to be preempted."""
    req, kv = eng.req, eng.kv
    computed = req.num_computed[rid]
    num_tokens = req.prompt_len[rid] + req.num_output[rid]
    while not kv.extend(rid, computed + n, num_tokens):
        loser = victim(eng)
        eng.running.remove(loser)
        scheduled.remove(loser)
        eng.preempt(loser)
        if loser == rid:
            return False
    return True


def give_in_order(eng: ReplicaEngine, order: list[int], budget: int, scheduled: Schedule,
                  victim: Callable = last_running) -> int:
    """Give running requests their tokens in `order` while the budget lasts; return the budget left.
    Stops when a request had to preempt itself (nothing else could be freed for it), as vLLM does."""
    status = eng.req.status
    total = budget
    for rid in order:
        if budget <= 0:
            break
        if status[rid] != RUNNING:  # preempted earlier in this step
            continue
        n = chunk(eng, rid, budget)
        if n <= 0:
            continue
        before = len(eng.preempted_now)
        ok = give(eng, rid, n, scheduled, victim)
        if len(eng.preempted_now) != before:
            budget = total - scheduled.total()  # victims may have held tokens of this step
        if not ok:
            break
        scheduled.add(rid, n)
        budget -= n
    return budget


def admit(eng: ReplicaEngine, rid: int, budget: int, now: float, chunked: bool = True, reserve_full: bool = True,
          watermark: bool | None = None) -> int:
    """Admit the waiting head `rid` with up to `budget` new tokens (it moves to running).

    Returns the tokens scheduled, or 0 when it cannot be admitted: its prompt does not fit the budget without
    chunking, or its blocks are not free (then the engine remembers the head was blocked). `reserve_full`
    is vLLM's check that the whole sequence fits before the first chunk runs; without it only the chunk's
    blocks are needed (DeepSpeed-FastGen allocates as it goes)."""
    cfg, req, kv = eng.cfg, eng.req, eng.kv
    num_tokens = req.prompt_len[rid] + req.num_output[rid]
    hits = kv.lookup(rid, num_tokens)
    cached = len(hits) * cfg.block_size
    computed = eng.ready_tokens(rid, cached)
    n = num_tokens - computed
    if n > budget:
        if not chunked:
            return 0
        n = budget
    if n <= 0:
        return 0
    full = num_tokens if reserve_full else computed + n
    apply_watermark = bool(eng.running) if watermark is None else watermark
    if not kv.admit(rid, hits, n + computed - cached, full, cfg.max_model_len, apply_watermark):
        eng.note_blocked(rid)
        return 0
    eng.admitted(rid, computed, now)
    return n


def all_decoding(eng: ReplicaEngine) -> bool:
    """Every running request wants exactly one token (none is computing a prompt)."""
    req = eng.req
    nc, pl, no = req.num_computed, req.prompt_len, req.num_output
    for rid in eng.running:
        if nc[rid] != pl[rid] + no[rid] - 1:
            return False
    return True


def fcfs_admission_closed(eng: ReplicaEngine, budget_left: int) -> bool:
    """A first-come-first-served policy admits nobody next step: no one waits, no seat or budget is left,
    or the head already failed to get blocks and nothing was freed since (free blocks only shrink in a span)."""
    return (not eng.waiting or len(eng.running) >= eng.cfg.max_num_seqs or budget_left <= 0
            or eng.head_blocked())
