"""Paged KV cache with vLLM v1's prefix cache: the same admission arithmetic and the same eviction order.

What vLLM's block pool does, and what this class keeps of it:
- block 0 is a reserved null block, so `num_blocks - 1` are usable;
- a freed block without a hash goes to the *front* of the free queue (reused first), a freed block with a hash
  goes to the *back* (LRU eviction), and a request frees its blocks tail first;
- a lookup walks the request's chained block hashes and stops at the first miss, never covering the last token;
- a hit on a free block takes it out of the free queue and counts against the free blocks at admission.

Physical block ids do not change any decision, so blocks without a hash are a plain count. A hashed block is
tracked individually only while another lookup could still find it: blocks of a shared prefix, and the own
blocks of a preempted request (which may hit them when it resumes). The hashed blocks of a finished request
are unreachable; they keep their LRU position as one anonymous run, which is all eviction needs of them (with
nothing findable in the LRU there is no position to keep, and they count as blocks without a hash).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Final, Hashable

from servesim.columns import zeros_column

BlockKey = Callable[[int, int], Hashable]  # (request, block index) -> chained hash of that block


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


NOTHING_REGISTERED: Final[list[int]] = []  # a request's registered blocks while it holds none; never appended to


class RequestBlocks:
    """Each request's blocks held, hashed blocks and registered (individually tracked) leading blocks: columns
    indexed by request id, read natively by the compiled engine where a dict lookup costs ten times more. One
    instance serves every replica of a request table, since a request holds blocks on one replica at a time."""

    def __init__(self, num_requests: int):
        self.held = zeros_column(num_requests)
        self.hashed = zeros_column(num_requests)
        self.registered = [NOTHING_REGISTERED] * num_requests
        # True once a preemption registered a request's own blocks (for it to hit when it resumes): before that,
        # a request that shares no prefix has nothing a lookup could find.
        self.resumable = [False] * num_requests


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool, block_key: BlockKey,
                 shared_blocks: Callable[[int], int] | None, columns: RequestBlocks, watermark: float = 0.0):
        self.block_size = block_size
        self.num_usable = num_blocks - 1  # vLLM reserves block 0 as the null block
        self.enable_caching = enable_caching
        self.watermark_blocks = int(watermark * num_blocks)
        self._key = block_key
        # How many leading blocks of a request other requests may share; None when no request shares any.
        self._shared_blocks = shared_blocks
        self.anon_free = self.num_usable  # free blocks without a hash: the front of vLLM's free queue
        self.lru: OrderedDict[int, int] = OrderedDict()  # back of the free queue: block id -> 1, or run id (<0) -> n
        self.lru_free = 0
        self.cached: dict[Hashable, dict[int, None]] = {}  # hash -> block ids holding it, first = the one hits get
        self.block_hash: dict[int, Hashable] = {}
        self.ref: dict[int, int] = {}
        self._next_id = 1
        self._next_run = -1
        # Per request (0 / nothing unless it holds blocks here): blocks held, registered leading blocks, hashed blocks.
        self.n_blocks = columns.held
        self.registered = columns.registered
        self.n_hashed = columns.hashed
        self.resumable = columns.resumable
        self.num_frees = 0  # bumped whenever blocks return; lets a policy know a blocked admission may now fit
        self.num_evicted = 0  # cached blocks whose hash was evicted to reuse the block

    # --- queries ---

    @property
    def num_free(self) -> int:
        return self.anon_free + self.lru_free

    @property
    def num_used(self) -> int:
        return self.num_usable - self.num_free

    def usage(self) -> float:
        return 1.0 - self.num_free / self.num_usable if self.num_usable else 0.0

    def lookup(self, rid: int, num_tokens: int) -> list[int]:
        """Cached blocks of the longest prefix hit, at most (num_tokens - 1) tokens so the last one is computed."""
        if not self.enable_caching:
            return []
        if not self.resumable[rid] and self.shareable(rid) == 0:
            return []  # none of its blocks was ever registered: the walk below would miss at the first
        hits = []
        cached = self.cached
        for i in range((num_tokens - 1) // self.block_size):
            holders = cached.get(self._key(rid, i))
            if not holders:
                break
            hits.append(next(iter(holders)))
        return hits

    # --- allocation ---

    def admit(self, rid: int, hits: list[int], num_new_tokens: int, num_tokens: int, max_model_len: int,
              apply_watermark: bool) -> bool:
        """vLLM's allocate_slots for a waiting request, with scheduler_reserve_full_isl: the whole sequence
        must fit before the first chunk is admitted."""
        bs = self.block_size
        num_hits = len(hits)
        ref = self.ref
        evictable = 0
        for b in hits:  # a loop, not sum() over a generator: compiled, no generator object per admission
            if ref[b] == 0:
                evictable += 1
        reserve = self.watermark_blocks if apply_watermark else 0
        free = self.num_free
        full = min(num_tokens, max_model_len)
        if max(cdiv(full, bs) - num_hits, 0) + evictable + reserve > free:
            return False
        slots = min(num_hits * bs + num_new_tokens, max_model_len)
        if max(cdiv(slots, bs) - num_hits, 0) + evictable + reserve > free:
            return False
        for b in hits:  # touch: a hit on a free block takes it out of the free queue
            if ref[b] == 0:
                del self.lru[b]
                self.lru_free -= 1
            ref[b] = ref[b] + 1  # compiled, `+=` on an item is generic arithmetic
        self.registered[rid] = hits
        self.n_blocks[rid] = num_hits
        self.n_hashed[rid] = num_hits
        self._grow(rid, cdiv(slots, bs))
        self._cache(rid, min(num_hits * bs + num_new_tokens, num_tokens))
        return True

    def extend(self, rid: int, total_tokens: int, num_tokens: int) -> bool:
        """Slots for a running request to hold `total_tokens` computed tokens; False if the blocks are not free."""
        bs = self.block_size
        held = self.n_blocks[rid]
        if total_tokens > held * bs:
            need = -(-total_tokens // bs) - held
            if need > self.anon_free + self.lru_free:
                return False
            self.take(need)
            self.n_blocks[rid] = held + need
        if self.enable_caching:
            hashable = total_tokens if total_tokens < num_tokens else num_tokens
            if hashable // bs > self.n_hashed[rid]:
                self._cache(rid, hashable)
        return True

    def _grow(self, rid: int, blocks: int) -> None:
        need = blocks - self.n_blocks[rid]
        if need > 0:
            self.take(need)
            self.n_blocks[rid] = blocks

    def take(self, n: int) -> None:
        """Pop n blocks off the front of the free queue, evicting the hashes of those that had one."""
        if n <= self.anon_free:  # the usual case: blocks without a hash at the front
            self.anon_free -= n
            return
        n -= self.anon_free
        self.anon_free = 0
        self.lru_free -= n
        lru = self.lru
        while n:
            key, count = next(iter(lru.items()))
            if key < 0:  # an unreachable run
                used = min(count, n)
                if used == count:
                    del lru[key]
                else:
                    lru[key] = count - used
                n -= used
            else:
                del lru[key]
                self._evict(key)
                n -= 1

    def _evict(self, block: int) -> None:
        self.num_evicted += 1
        key = self.block_hash.pop(block)
        del self.ref[block]
        holders = self.cached[key]
        del holders[block]
        if not holders:
            del self.cached[key]

    def _cache(self, rid: int, tokens: int) -> None:
        """Hash the request's full blocks; register those other requests could hit (the shared prefix)."""
        if not self.enable_caching:
            return
        full = tokens // self.block_size
        hashed = self.n_hashed[rid]
        if full <= hashed:
            return
        shareable = min(full, self.shareable(rid))
        registered = self.registered[rid]
        for i in range(max(hashed, len(registered)), shareable):
            registered.append(self._register(self._key(rid, i), refs=1))
        self.n_hashed[rid] = full

    def shareable(self, rid: int) -> int:
        """Leading blocks of the request that other requests may share."""
        shared = self._shared_blocks
        return 0 if shared is None else shared(rid)

    def _register(self, key: Hashable, refs: int) -> int:
        block = self._next_id
        self._next_id += 1
        self.block_hash[block] = key
        self.ref[block] = refs
        holders = self.cached.get(key)
        if holders is None:
            self.cached[key] = {block: None}
        else:
            holders[block] = None
        return block

    # --- freeing ---

    def free(self, rid: int, will_resume: bool) -> None:
        """Return a request's blocks, tail first. A preempted request (will_resume) keeps its hashed blocks
        findable so it can hit them when it is readmitted."""
        blocks = self.n_blocks[rid]
        registered = self.registered[rid]
        hashed = self.n_hashed[rid]
        self.n_blocks[rid] = self.n_hashed[rid] = 0
        self.registered[rid] = NOTHING_REGISTERED
        self.num_frees += 1
        self.anon_free += blocks - hashed  # no hash: front of the queue
        lru = self.lru
        own_hashed = hashed - len(registered)
        if own_hashed > 0:
            if will_resume:
                self.resumable[rid] = True
                for i in range(hashed - 1, len(registered) - 1, -1):
                    lru[self._register(self._key(rid, i), refs=0)] = 1
                self.lru_free += own_hashed
            elif not lru:
                # Unreachable hashes with nothing findable queued: whatever is freed later goes before them (at
                # the front) or after them (at the back), so they are used exactly when unhashed blocks would be.
                self.anon_free += own_hashed
            else:
                last = next(reversed(lru))
                if last < 0:
                    lru[last] = lru[last] + own_hashed  # not `+=`: compiled, an item's `+=` is generic arithmetic
                else:
                    lru[self._next_run] = own_hashed
                    self._next_run -= 1
                self.lru_free += own_hashed
        ref = self.ref
        for b in reversed(registered):
            left = ref[b] - 1
            ref[b] = left
            if left == 0:
                lru[b] = 1
                self.lru_free += 1
