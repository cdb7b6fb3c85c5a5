"""Fair sharing between clients: the Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language
Models", OSDI 2024) with preemption to bound any client's share of the KV cache (the setting of FastSwitch).

Each client has a counter of the service it received: `input_weight` per prompt token computed and
`output_weight` per token generated (VTC's 1 and 2). The next request admitted is the head of the waiting
client with the smallest counter (fewest running requests breaks ties); a client that starts waiting after a
pause has its counter lifted to the smallest counter among the waiting clients, so idling earns no credit.
When the chosen request cannot start for lack of a seat or of blocks, the running request admitted last by
the client holding the most KV blocks is preempted (recompute), provided that client is another one and
keeps at least as many blocks as the newcomer's client will hold: a flooding client cannot keep others
out, and two clients cannot take turns preempting each other.
Running requests get their tokens as in vLLM v1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from servesim.engine.kv_cache import cdiv
from servesim.engine.policies.base import Policy, Schedule
from servesim.engine.policies.common import admit, all_decoding, give_in_order, need
from servesim.engine.policies.queues import ClientQueues
from servesim.engine.requests import FINISHED, REJECTED, RequestTable
from servesim.errors import ServesimError

if TYPE_CHECKING:
    from servesim.engine.engine import ReplicaEngine


class FairPolicy(Policy):
    name: ClassVar[str] = "fair"

    def __init__(self, input_weight: float = 1.0, output_weight: float = 2.0):
        if not (input_weight > 0 and output_weight > 0):
            raise ServesimError(f"fair's input_weight and output_weight must be > 0, got {input_weight}, {output_weight}")
        self.input_weight = input_weight
        self.output_weight = output_weight
        self.counter: dict[int, float] = {}
        self._outputs_credited: dict[int, int] = {}  # admitted requests whose outputs are still being counted

    @staticmethod
    def engine_defaults(max_model_len: int) -> dict:
        return {}

    def make_waiting_queue(self, req: RequestTable) -> ClientQueues:
        self._client = req.client if req.client is not None else [0] * req.n
        client = self._client
        return ClientQueues(lambda rid: client[rid])

    # --- service accounting ---

    def _catch_up(self, eng: ReplicaEngine) -> None:
        """Credit tokens generated since the last step (decode spans skip the policy), then lift newcomers."""
        req, counter, client = eng.req, self.counter, self._client
        no, status = req.num_output, req.status
        credited = self._outputs_credited
        for rid, seen in list(credited.items()):
            if no[rid] != seen:
                counter[client[rid]] += self.output_weight * float(no[rid] - seen)  # an i64 converts as Python's int would
                credited[rid] = no[rid]
            if status[rid] in (FINISHED, REJECTED):
                del credited[rid]
        queues: ClientQueues = eng.waiting
        if not queues.fresh:
            return
        arrived: dict[int, int] = {}
        for rid in queues.fresh:
            arrived[client[rid]] = arrived.get(client[rid], 0) + 1
            counter.setdefault(client[rid], 0.0)
        queues.fresh.clear()
        busy = {client[r] for r in eng.running}
        returning = [c for c, k in arrived.items() if c not in busy and len(queues.queues[c]) == k]
        backlogged = [counter[c] for c in queues.queues if c not in returning]
        if backlogged:
            floor = min(backlogged)
            for c in returning:
                counter[c] = max(counter[c], floor)

    # --- scheduling ---

    def _victim_for(self, eng: ReplicaEngine, rid: int) -> int | None:
        """The last-admitted running request of the client holding the most KV blocks, if that client would
        still hold at least as much as `rid`'s client after the swap (so two clients cannot take turns)."""
        client, blocks = self._client, eng.kv.n_blocks
        held: dict[int, int] = {}
        for r in eng.running:
            held[client[r]] = held.get(client[r], 0) + blocks[r]
        c = client[rid]
        top = max(held, key=lambda o: (held[o], o), default=None)
        if top is None or top == c:
            return None
        victim = next(r for r in reversed(eng.running) if client[r] == top)
        req = eng.req
        wanted = cdiv(req.prompt_len[rid] + req.num_output[rid], eng.cfg.block_size)
        if held[top] - blocks[victim] < held.get(c, 0) + wanted:
            return None
        return victim

    def schedule(self, eng: ReplicaEngine, now: float, out: Schedule) -> None:
        self._catch_up(eng)
        cfg, client, counter = eng.cfg, self._client, self.counter
        running, queues = eng.running, eng.waiting
        prefilling = {r for r in running if need(eng, r) > 1}
        total = cfg.max_num_batched_tokens
        budget = give_in_order(eng, list(running), total, out)
        if queues and budget > 0 and not eng.preempted_now:
            seats: dict[int, int] = {}  # running requests per client
            for r in running:
                seats[client[r]] = seats.get(client[r], 0) + 1
            while queues and budget > 0:
                c = min(queues.queues, key=lambda o: (counter[o], seats.get(o, 0), o))
                rid = queues.head(c)
                if rid in eng.preempted_now:  # made room for another client this step: not back before it
                    break
                n = admit(eng, rid, budget, now) if len(running) < cfg.max_num_seqs else 0
                if n == 0:
                    loser = self._victim_for(eng, rid)
                    if loser is None:
                        break
                    running.remove(loser)
                    out.remove(loser)
                    eng.preempt(loser)
                    seats[client[loser]] -= 1
                    budget = total - out.total()
                    continue
                seats[c] = seats.get(c, 0) + 1
                out.add(rid, n)
                prefilling.add(rid)
                self._outputs_credited.setdefault(rid, eng.req.num_output[rid])
                budget -= n
        rids, tokens = out.rids, out.tokens
        for i in range(out.n):
            if rids[i] in prefilling:
                counter[client[rids[i]]] += self.input_weight * float(tokens[i])  # as float * int converts

    def decode_span_ok(self, eng: ReplicaEngine) -> bool:
        b = len(eng.running)
        return not eng.waiting and b <= eng.cfg.max_num_batched_tokens and all_decoding(eng)
