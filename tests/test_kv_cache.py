"""The KV block manager alone: free-block accounting, prefix hits, LRU eviction order (property tests)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.kv_cache import KVCacheManager, RequestBlocks, cdiv


def manager(blocks, shared_tokens=None, caching=True, bs=16):
    shared_tokens = shared_tokens or {}

    def key(rid, i):
        group, length = shared_tokens.get(rid, (None, 0))
        if (i + 1) * bs <= length:
            return ("g", group, i)
        return ("u", rid, i)

    return KVCacheManager(blocks, bs, caching, key, lambda rid: shared_tokens.get(rid, (None, 0))[1] // bs,
                          RequestBlocks(16))


ops = st.lists(st.tuples(st.sampled_from(["admit", "extend", "free", "preempt"]), st.integers(0, 7),
                         st.integers(1, 200)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(8, 60), st.booleans())
def test_accounting_never_goes_wrong(seq, blocks, caching):
    shared = {r: (r % 2, 64) for r in range(8)}  # even and odd requests share 4 blocks within their group
    kv = manager(blocks, shared, caching)
    live: dict[int, int] = {}  # request -> tokens it holds slots for
    preempted: set[int] = set()  # these may also hit their own earlier blocks
    for op, rid, n in seq:
        if op == "admit" and rid not in live:
            tokens = n + 64
            hits = kv.lookup(rid, tokens)
            assert len(hits) * 16 <= tokens - 1
            if rid not in preempted:
                assert len(hits) * 16 <= 64 and (caching or not hits)
            if kv.admit(rid, hits, tokens - len(hits) * 16, tokens, 10_000, apply_watermark=False):
                live[rid] = tokens
        elif op == "extend" and rid in live:
            if kv.extend(rid, live[rid] + n, live[rid] + n):
                live[rid] += n
        elif op in ("free", "preempt") and rid in live:
            kv.free(rid, will_resume=op == "preempt")
            del live[rid]
            if op == "preempt":
                preempted.add(rid)
        held = sum(kv.n_blocks)
        distinct_shared = len({b for r in live for b in kv.registered[r]})
        own = sum(kv.n_blocks[r] - len(kv.registered[r]) for r in live)
        assert kv.num_used == own + distinct_shared  # a shared block is counted once however many use it
        assert 0 <= kv.num_free <= kv.num_usable
        assert held >= kv.num_used
        for r, tokens in live.items():
            assert kv.n_blocks[r] == cdiv(tokens, 16)
        assert all(count > 0 for count in kv.lru.values())
        for r in range(8):  # lookup's shortcut (nothing registered for r) agrees with walking the hashes
            walked = []
            for i in range(63):
                holders = kv.cached.get(kv._key(r, i)) if caching else None
                if not holders:
                    break
                walked.append(next(iter(holders)))
            assert kv.lookup(r, 1009) == walked
    for r in list(live):
        kv.free(r, will_resume=False)
    assert kv.num_free == kv.num_usable


def test_lookup_never_covers_the_last_token_and_stops_at_first_miss():
    kv = manager(100, {0: ("g", 64), 1: ("g", 64)})
    assert kv.admit(0, [], 64, 64, 10_000, False)
    assert len(kv.lookup(1, 64)) == 3  # 64 tokens all shared: the 4th block is recomputed for its last token
    assert len(kv.lookup(1, 65)) == 4
    assert kv.lookup(2, 65) == []


def test_freed_shared_blocks_are_evicted_lru_tail_first():
    kv = manager(6, {0: ("g", 80), 1: ("g", 80)})  # 5 usable blocks
    assert kv.admit(0, [], 80, 80, 10_000, False)  # 5 blocks, all hashed and shareable
    kv.free(0, will_resume=False)  # freed tail first: block 4 is evicted first, block 0 last
    kv.take(2)  # evicts blocks 4 and 3
    assert len(kv.lookup(1, 81)) == 3


def test_preempted_request_hits_its_own_blocks_on_resume():
    kv = manager(20)
    assert kv.admit(7, [], 100, 100, 10_000, False)
    kv.free(7, will_resume=True)
    assert len(kv.lookup(7, 100)) == 6  # 99 // 16 full blocks
    assert kv.lookup(8, 100) == []


def test_unreachable_blocks_queued_before_findable_ones_are_used_first():
    # A finished request's hashed blocks join the unhashed count when nothing findable is queued (no position
    # to keep); a preempted request's own blocks queued after them are still evicted only once they are used up.
    kv = manager(20)  # 19 usable blocks
    assert kv.admit(1, [], 64, 64, 10_000, False)  # 4 hashed blocks, never findable once it finishes
    assert kv.admit(2, [], 96, 96, 10_000, False)  # 6 hashed blocks
    kv.free(1, will_resume=False)
    kv.free(2, will_resume=True)  # its 6 blocks stay findable for its resumption, behind request 1's 4
    assert kv.num_free == 19 and len(kv.lookup(2, 97)) == 6
    kv.take(13)  # 9 never-used blocks and request 1's 4: nothing findable is evicted yet
    assert kv.num_evicted == 0 and len(kv.lookup(2, 97)) == 6
    kv.take(1)  # then request 2's blocks, its tail block first
    assert kv.num_evicted == 1 and len(kv.lookup(2, 97)) == 5
