"""One serving replica: request queues, the KV cache and the clock, shared by every scheduling policy.

A policy decides who gets tokens in a step (`schedule`); the engine applies the step: advances computed
tokens, asks the cost model for the step's duration, emits the sampled tokens at the step's end and frees
finished requests. When the policy certifies that the coming steps are pure decodes of every running
request with nothing else able to happen, the engine advances that whole span at once: the batch is fixed
but for contexts growing by one token a step, so finishes, block allocations and step times are computed
in closed form, exactly equal to stepping one by one.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

from servesim.columns import as_times, bisect_times, count_at_most, nth_smallest, zeros_column
from servesim.engine.config import EngineConfig
from servesim.engine.kv_cache import KVCacheManager
from servesim.engine.logs import EmitLog, StepLog
from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.requests import FINISHED, REJECTED, RUNNING, WAITING, RequestTable
from servesim.perf.base import StepCostModel, StepTotals, decode_span_until
from servesim.perf.calibrated import CalibratedModel
from servesim.vec_types import i64, vec

# Final: compiled, constants in C, not a module-dict lookup at every use.
SPAN_CHUNK: Final = 256  # most steps one span plans; a longer quiet stretch takes several
FINISH_LENGTH: Final = 1
FINISH_MODEL_LEN: Final = 2
FINISH_REJECTED: Final = 3


def rejects(cfg: EngineConfig, prompt: int, max_tokens: int) -> bool:
    """vLLM's rejection of a request it cannot serve: an empty or over-long prompt (or prompt + max_tokens)."""
    return prompt <= 0 or prompt > cfg.max_model_len or (cfg.reject_overlong and prompt + max_tokens > cfg.max_model_len)


class SpanPlan:
    """A planned decode span (a plain class: compiled, a native object; a NamedTuple is built by Python code)."""

    def __init__(self, start: float, kv_tokens: int, ends: vec[float], slack: vec[i64], kv_used: int):
        self.start = start
        self.kv_tokens = kv_tokens  # KV read by the span's first step
        self.ends = ends  # end time of each step (servesim.columns' times: a vec when compiled)
        # Per running request, in running order: decode steps before it needs a new KV block (an int column).
        self.slack = slack
        self.kv_used = kv_used  # blocks in use before the span


class ReplicaEngine:
    def __init__(self, cfg: EngineConfig, cost: StepCostModel, policy, requests: RequestTable, replica_id: int = 0,
                 use_spans: bool = True, log_schedule: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.cost = cost
        # The usual clock, typed: compiled, its calls are native instead of going through the Python protocol.
        self.calibrated: CalibratedModel | None = cost if isinstance(cost, CalibratedModel) else None
        self.policy: Policy = policy
        self.req = requests
        self.replica_id = replica_id
        self.use_spans = use_spans
        bs = cfg.block_size
        self.kv = KVCacheManager(cfg.num_gpu_blocks, bs, cfg.enable_prefix_caching, requests.block_key_fn(bs),
                                 requests.shared_blocks_fn(bs), requests.blocks(), cfg.watermark)
        self.running: list[int] = []
        # A policy may order its waiting queue (by priority, by client); vLLM's is first come, first served.
        make_queue = getattr(policy, "make_waiting_queue", None)
        self.waiting: Any = make_queue(requests) if make_queue else deque()  # a deque or a policy's queue
        self.external: dict[int, int] = {}  # request -> prompt tokens whose KV arrived from elsewhere (PD)
        self.step_kv_used = 0  # blocks in use while the latest step ran (before its finishes freed theirs)
        self.steps = StepLog(cfg.block_size, cost)
        self.emits = EmitLog(requests.n, requests.emit_cursors())
        self.finished_now: list[int] = []  # requests that finished in the latest step() call
        self.preempted_now: list[int] = []  # requests preempted in the latest step
        # With log_schedule, one entry per step: ([(request, tokens), ...], [preempted requests]).
        self.schedule_log: list | None = [] if log_schedule else None
        self.num_finished = 0
        self.num_rejected = 0
        # The waiting head when it last failed to get blocks, and kv.num_frees then (two ints, not a tuple: compiled,
        # comparing tuples is generic and builds one per check).
        self._blocked_head = -1
        self._blocked_frees = -1
        self.pending: SpanPlan | None = None  # a planned span not yet applied
        # The one SpanPlan every plan fills (at most one is pending, and none outlives the next plan): an object
        # per span would be allocated and freed ~2 times a request.
        self._plan = SpanPlan(0.0, 0, as_times([]), zeros_column(0), 0)
        self.scheduled = Schedule(cfg.max_num_seqs)  # the latest single step's schedule (reused: no allocation)

    # --- what policies and drivers use ---

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def add(self, rid: int, now: float, transferred_tokens: int = 0) -> bool:
        """A request arrives; False if it is rejected the way vLLM rejects an over-long request.

        `transferred_tokens`: in a disaggregated cluster, the prompt tokens whose KV was computed by a prefill
        replica and sent here; admission then allocates their blocks but computes only the rest."""
        req, cfg = self.req, self.cfg
        req.arrival[rid] = now
        if rejects(cfg, req.prompt_len[rid], req.max_tokens[rid]):
            req.status[rid] = REJECTED
            req.finish_reason[rid] = FINISH_REJECTED
            req.finished[rid] = now
            self.num_rejected += 1
            return False
        req.status[rid] = WAITING
        if transferred_tokens:
            self.external[rid] = transferred_tokens
        self.waiting.append(rid)
        return True

    def preempt(self, rid: int) -> None:
        """Recompute preemption: free the blocks, forget computed tokens, go to the front of the queue."""
        self.kv.free(rid, will_resume=True)
        req = self.req
        req.num_computed[rid] = 0
        req.status[rid] = WAITING
        req.num_preemptions[rid] += 1
        self.waiting.appendleft(rid)
        self.preempted_now.append(rid)

    def ready_tokens(self, rid: int, cached_tokens: int) -> int:
        """Tokens a waiting request need not compute on admission: its prefix-cache hit, or more when its
        prompt's KV was transferred here (the last prompt token is always recomputed, as after a full hit)."""
        if not self.external:
            return cached_tokens
        return max(cached_tokens, self.external.get(rid, 0))

    def admitted(self, rid: int, cached_tokens: int, now: float) -> None:
        """Waiting request `rid` got its blocks: it starts running with `cached_tokens` already computed."""
        head: int = self.waiting[0]  # typed: a native compare below
        if head == rid:
            self.waiting.popleft()
        else:  # a policy that admits out of order (per-client queues)
            self.waiting.remove(rid)
        self.running.append(rid)
        req = self.req
        if self.external:
            self.external.pop(rid, None)  # a later preemption recomputes the whole prompt here
        req.num_computed[rid] = cached_tokens
        req.status[rid] = RUNNING
        if cached_tokens:
            req.hit_tokens[rid] += cached_tokens
        if req.first_scheduled[rid] < 0:
            req.first_scheduled[rid] = now
            req.cached_tokens[rid] = cached_tokens

    def note_blocked(self, rid: int) -> None:
        self._blocked_head = rid
        self._blocked_frees = self.kv.num_frees

    def head_blocked(self) -> bool:
        """The waiting head failed to get blocks and nothing was freed since: it cannot be admitted yet."""
        if not self.waiting:
            return False
        head: int = self.waiting[0]
        return head == self._blocked_head and self.kv.num_frees == self._blocked_frees

    # --- stepping ---

    def start(self, now: float, hint: float = math.inf, through_finishes: bool = False) -> float:
        """Begin the next unit of work at `now` and return when it ends.

        A single step is applied at once (its finishes are in `finished_now`). A span of quiet decode steps is
        only planned: it stays `pending` until `settle`, so that a request arriving midway can cut it at the
        step then running, exactly as if the steps had been taken one by one. `hint`, when the caller knows
        the next request is due then, stops planning after the step crossing it (planning further is waste).
        With `through_finishes` (the caller knows nothing arrives before `hint` and nobody waits on a finish)
        spans that end before `hint` because requests finish are applied at once and decoding goes on.
        """
        self.finished_now = []
        self.preempted_now = []
        certified = False  # after a span that ended in finishes with nobody waiting (see Policy.decode_span_ok)
        while self.use_spans and self.running and (certified or self.policy.decode_span_ok(self)):
            plan = self._plan_span(now, hint)
            if plan is None:
                break
            end = plan.ends[len(plan.ends) - 1]
            if not (through_finishes and end < hint and not self.waiting):
                self.pending = plan
                return end
            finished = len(self.finished_now)
            self._apply_span(len(plan.ends), plan.start, plan.kv_tokens, plan.ends, plan.slack)
            if len(self.finished_now) == finished:  # stopped by the free blocks or SPAN_CHUNK: the next unit decides
                return end
            now = end
            certified = True
        if self.finished_now:  # decoding stopped being quiet right after a span: the next unit starts there
            return now
        return self._step(now)

    def settle(self, until: float = math.inf) -> float:
        """Apply the pending span up to the step in flight at `until` (all of it by default); return that
        step's end. A step ending exactly at `until` is done: the next step would start then."""
        plan = self.pending
        assert plan is not None, "settle() needs a pending span"
        self.pending = None
        self.finished_now = []
        ends = plan.ends
        k = 1 + bisect_times(ends, until, 0, len(ends) - 1)
        self._apply_span(k, plan.start, plan.kv_tokens, ends[:k] if k < len(ends) else ends, plan.slack)
        return ends[k - 1]

    def step(self, now: float, horizon: float = math.inf) -> float:
        """One unit of work from `now`, a span cut after the step that ends at or after `horizon`."""
        end = self.start(now)
        return self.settle(horizon) if self.pending is not None else end

    def kv_used_at(self, now: float) -> int:
        """KV blocks in use at `now` while a span is pending: each started step has taken its blocks."""
        plan = self.pending
        assert plan is not None, "kv_used_at() needs a pending span"
        started = 1 + bisect_times(plan.ends, now, 0, len(plan.ends) - 1)
        rounds, within = divmod(started - 1, self.cfg.block_size)
        return plan.kv_used + len(plan.slack) * rounds + count_at_most(plan.slack, within)

    def _step(self, now: float) -> float:
        req = self.req
        scheduled = self.scheduled
        scheduled.n = 0
        self.policy.schedule(self, now, scheduled)
        if self.schedule_log is not None:
            self.schedule_log.append((scheduled.pairs(), list(self.preempted_now)))
        if not scheduled.n and not self.preempted_now and not self.running:
            raise RuntimeError(f"policy {self.policy.name} scheduled nothing with {len(self.waiting)} requests waiting")
        nc, pl, no = req.num_computed, req.prompt_len, req.num_output
        rids, given = scheduled.rids, scheduled.tokens
        totals = StepTotals.of_schedule(rids, given, scheduled.n, nc)  # before the step advances them
        emitting = False
        for i in range(scheduled.n):
            rid = rids[i]
            c = nc[rid] = nc[rid] + given[i]
            if c == pl[rid] + no[rid]:
                emitting = True
        tokens, num_seqs, prefill_tokens = totals.num_tokens, totals.num_seqs, totals.prefill_tokens
        calibrated = self.calibrated
        if not tokens:
            duration = 0.0
        elif calibrated is not None:
            duration = calibrated.totals_time(totals)
        else:
            duration = self.cost.step_time(totals.shape())
        end = now + duration
        step = len(self.steps)
        self.step_kv_used = self.kv.num_used
        if emitting:
            self._emit(scheduled, step, end)
        self.steps.append(now, duration, tokens, prefill_tokens, tokens - prefill_tokens, num_seqs,
                          len(self.running), len(self.waiting), self.kv.num_used, len(self.preempted_now))
        return end

    def _emit(self, scheduled: Schedule, step: int, end: float) -> None:
        """Each scheduled request whose computed tokens reached its prompt plus outputs samples a token."""
        req, cfg, emits = self.req, self.cfg, self.emits
        nc, no, pl, mt = req.num_computed, req.num_output, req.prompt_len, req.max_tokens
        done = []
        last_emit, first_token = emits.last, req.first_token
        rids = scheduled.rids
        this: i64 = step  # i64 locals: compared with column values natively
        before: i64 = step - 1
        mml: i64 = cfg.max_model_len
        for i in range(scheduled.n):
            rid = rids[i]
            if nc[rid] != pl[rid] + no[rid]:  # a prompt chunk that samples nothing
                continue
            out = no[rid] + 1
            no[rid] = out
            if last_emit[rid] == before:  # EmitLog.emit, inlined: most tokens continue a range
                last_emit[rid] = this
            else:
                emits.emit(rid, step)
            if out == 1:  # its first token (outputs survive preemption, so this happens once)
                first_token[rid] = end
            if out >= mt[rid]:
                done.append((rid, FINISH_LENGTH))
            elif pl[rid] + out >= mml:
                done.append((rid, FINISH_MODEL_LEN))
        if done:
            self._finish(done, end)

    def _finish(self, done: list[tuple[int, int]], end: float) -> None:
        req = self.req
        for rid, reason in done:
            req.status[rid] = FINISHED
            req.finish_reason[rid] = reason
            req.finished[rid] = end
            self.kv.free(rid, will_resume=False)
            self.emits.close(rid)
            self.finished_now.append(rid)
        self.num_finished += len(done)
        running = self.running
        for rid, _ in done:  # every finisher was running, and removing keeps the others' order
            i = 0
            while running[i] != rid:  # list.remove, with native compares (remove's are generic)
                i += 1
            running.pop(i)

    # --- quiet decode spans ---

    def _plan_span(self, now: float, horizon: float) -> "SpanPlan | None":
        """The decode steps that can run before anything changes: until the first request stops or the free
        KV blocks run out (SPAN_CHUNK at most); None if not even one."""
        req, cfg, kv = self.req, self.cfg, self.kv
        running = self.running
        nc, no, pl, mt = req.num_computed, req.num_output, req.prompt_len, req.max_tokens
        bs: i64 = cfg.block_size  # i64 locals: compiled, plain machine arithmetic (an int is tagged and checked)
        mml: i64 = cfg.max_model_len
        # Steps until the first request stops (at the end of that step), and each request's block slack:
        # it needs a new block after `slack` more tokens, then every bs.
        k_max: i64 = SPAN_CHUNK
        kv_tokens: i64 = 0
        n_blocks = kv.n_blocks
        b = len(running)
        slack = zeros_column(b)  # filled by index: no append (and no growing) per request
        i: i64 = 0
        for rid in running:
            r: i64 = rid  # unboxed once (see _apply_span)
            out = no[r]
            left = mt[r] - out
            if mml - pl[r] - out < left:
                left = mml - pl[r] - out
            if left < k_max:
                k_max = left
            c = nc[r]
            kv_tokens += c
            slack[i] = n_blocks[r] * bs - c
            i += 1
        free = kv.num_free
        rounds = free // b  # every request can take this many blocks, and the first free % b of them one more
        if rounds * bs < k_max:  # otherwise the blocks outlast the span whatever the slack
            k_kv = nth_smallest(slack, free % b) + rounds * bs
            if k_kv < k_max:
                k_max = k_kv
                if k_max < 1:
                    return None
        kv_tokens += b
        calibrated = self.calibrated
        if calibrated is not None:
            ends = calibrated.decode_span_until(b, kv_tokens, k_max, now, horizon)
        else:
            ends = as_times(decode_span_until(self.cost, b, kv_tokens, k_max, now, horizon))
        plan = self._plan
        plan.start, plan.kv_tokens, plan.ends, plan.slack, plan.kv_used = now, kv_tokens, ends, slack, kv.num_used
        return plan

    def _apply_span(self, k: int, now: float, kv_tokens: int, ends: vec[float], slack: vec[i64]) -> None:
        req, cfg, kv = self.req, self.cfg, self.kv
        running = self.running
        nc, no, pl, mt = req.num_computed, req.num_output, req.prompt_len, req.max_tokens
        bs, mml = cfg.block_size, cfg.max_model_len
        first_step = len(self.steps)
        last_step = first_step + k - 1
        # i64 copies for the loop below: compared with and stored into columns natively
        steps: i64 = k
        first: i64 = first_step
        last: i64 = last_step
        limit: i64 = mml
        if self.schedule_log is not None:
            entry = [(rid, 1) for rid in running]
            self.schedule_log.extend((entry, []) for _ in range(k))
        used_before = kv.num_used
        n_blocks, n_hashed = kv.n_blocks, kv.n_hashed
        caching = kv.enable_caching  # without caching nothing is hashed
        new_blocks: i64 = 0
        done = []
        emits = self.emits
        last_emit, range_start = emits.last, emits.first
        first_token = req.first_token
        continuing: i64 = first_step - 1
        # Block counts by shifts where the block size is a power of two (vLLM's are): two divisions per request
        # cost more than the rest of its update. c >= 0, so c >> s is c // bs and (c + bs - 1) >> s is ceil.
        shift: i64 = bs.bit_length() - 1 if bs & (bs - 1) == 0 else -1
        round_up: i64 = bs - 1
        for r in running:  # the hot loop: EmitLog.emit_range inlined
            rid: i64 = r  # unboxed once: compiled, every index below is then a native int
            c = nc[rid] + steps
            held = n_blocks[rid]
            if shift >= 0:
                blocks, full = (c + round_up) >> shift, c >> shift
            else:
                blocks, full = -(-c // bs), c // bs
            grow = blocks - held
            if grow > 0:
                n_blocks[rid] = held + grow
                new_blocks += grow
            if caching:
                n_hashed[rid] = full
            nc[rid] = c
            out = no[rid] = no[rid] + steps
            if last_emit[rid] != continuing:
                emits.close_range(rid)
                range_start[rid] = first
                if out == steps:  # no output before: its last prompt token was the one pending
                    first_token[rid] = ends[0]
            last_emit[rid] = last
            if out >= mt[rid]:
                done.append((rid, FINISH_LENGTH))
            elif pl[rid] + out >= limit:
                done.append((rid, FINISH_MODEL_LEN))
        kv.take(new_blocks)
        b = len(running)
        self.step_kv_used = kv.num_used
        if done:
            self._finish(done, ends[len(ends) - 1])
        self.steps.append_span(now, ends, b, kv_tokens, len(self.waiting), used_before, slack,
                               len(self.running), kv.num_used)
