"""Routing table: exact k-closest (against brute force), k-buckets, ping-before-evict, replacement cache."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from qis_gateway.swarm.core.lookup import Lookup
from qis_gateway.swarm.core.routing import Contact, RoutingTable


def _contact(rng: random.Random, i: int, prefix_of: int | None = None, bits: int = 0) -> Contact:
    x = rng.getrandbits(256)
    if prefix_of is not None and bits:
        mask = ((1 << bits) - 1) << (256 - bits)
        x = (prefix_of & mask) | (x & ~mask & ((1 << 256) - 1))
    return Contact(x.to_bytes(32, "big"), ("10.0.%d.%d" % (i >> 8 & 255, i & 255), 4000))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 400), count=st.integers(1, 40),
       clustered=st.integers(0, 24), k=st.sampled_from([2, 8, 20]))
def test_closest_matches_brute_force(seed: int, n: int, count: int, clustered: int, k: int) -> None:
    rng = random.Random(seed)
    own = rng.getrandbits(256)
    table = RoutingTable(own.to_bytes(32, "big"), k=k)
    for i in range(n):
        # some contacts share a long prefix with us, so low buckets fill too
        table.add_proven(_contact(rng, i, own, rng.randrange(clustered + 1)), 0.0)
    held = table.contacts()
    assert len(held) == len(table)
    targets = [rng.getrandbits(256), own, own ^ 1, own ^ (1 << 255)]
    if held:
        targets.append(held[0].id_int)
        targets.append(held[-1].id_int ^ 3)
    for target in targets:
        want = sorted(held, key=lambda c: c.id_int ^ target)[:count]
        got = table.closest(target, count)
        assert [c.id_int for c in got] == [c.id_int for c in want]
        if held:
            ex = held[0].id_int
            want_ex = [c for c in sorted(held, key=lambda c: c.id_int ^ target) if c.id_int != ex][:count]
            assert [c.id_int for c in table.closest(target, count, ex)] == [c.id_int for c in want_ex]


def test_bucket_is_lru_and_full_bucket_asks_to_ping_the_least_recently_seen() -> None:
    rng = random.Random(5)
    own = 0
    table = RoutingTable(own.to_bytes(32, "big"), k=3, replacement_size=2, evict_ping_interval_s=60.0)
    far = [Contact(((1 << 255) | rng.getrandbits(200)).to_bytes(32, "big"), ("10.0.0.%d" % i, 1)) for i in range(6)]
    for c in far[:3]:
        assert table.add_proven(c, 0.0) is None
    assert table.add_proven(far[0], 1.0) is None  # seen again: moves to the tail
    assert [c.id_int for c in table.buckets[255]] == [far[1].id_int, far[2].id_int, far[0].id_int]
    to_ping = table.add_proven(far[3], 2.0)
    assert to_ping is far[1]  # least recently seen
    assert table.find(far[3].id_int) is None  # newcomer waits in the replacement cache
    assert table.add_proven(far[4], 3.0) is None  # one ping per bucket per interval
    assert table.add_proven(far[5], 70.0) is far[1]
    # far[1] never answered: evicted, newest replacement (far[5]) promoted
    assert table.remove(far[1].id_int)
    assert table.find(far[5].id_int) is not None
    assert table.find(far[1].id_int) is None
    assert len(table) == 3


def test_failures_evict_after_max_failures_and_success_resets() -> None:
    table = RoutingTable(bytes(32), k=20, max_failures=2)
    c = Contact(b"\x80" + bytes(31), ("10.0.0.1", 1))
    table.add_proven(c, 0.0)
    assert not table.record_failure(c.id_int)
    table.record_success(c.id_int)
    assert not table.record_failure(c.id_int)
    assert table.record_failure(c.id_int)
    assert len(table) == 0


def test_own_id_never_enters_table() -> None:
    own = bytes(range(32))
    table = RoutingTable(own)
    assert table.add_proven(Contact(own, ("10.0.0.1", 1)), 0.0) is None
    assert len(table) == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 300), fail_pct=st.integers(0, 60))
def test_lookup_ends_with_the_k_closest_live_nodes(seed: int, n: int, fail_pct: int) -> None:
    """A lookup over a universe where every node knows everyone ends exactly at the k closest live nodes."""
    rng = random.Random(seed)
    k, alpha = 8, 3
    nodes = [_contact(rng, i) for i in range(n)]
    dead = {c.id_int for c in nodes if rng.randrange(100) < fail_pct}
    target = rng.getrandbits(256)
    by_dist = sorted(nodes, key=lambda c: c.id_int ^ target)
    live = [c for c in by_dist if c.id_int not in dead][:k]
    # every responder knows the region around the target up to its k-th live node, plus random noise
    upto = by_dist.index(live[-1]) + 1 if live else len(by_dist)
    lookup = Lookup(target, k, alpha, nodes[:3], exclude_int=-1)
    for _ in range(10 * n + 10):
        batch = lookup.next_requests()
        if not batch and lookup.inflight == 0:
            break
        assert lookup.inflight <= alpha
        for cand in batch:
            if cand.contact.id_int in dead:
                lookup.failed(cand)
            else:
                lookup.answered(cand, rng.sample(nodes, min(3, n)) + by_dist[:upto])
    assert lookup.finished()
    if any(c.id_int not in dead for c in nodes[:3]):
        assert [c.contact.id_int for c in lookup.closest_answered(k)] == [c.id_int for c in live]
        assert lookup.requests <= n


def test_lookup_keeps_alpha_in_flight_without_lock_step_rounds() -> None:
    rng = random.Random(2)
    seeds = [_contact(rng, i) for i in range(10)]
    lookup = Lookup(rng.getrandbits(256), 8, 3, seeds, exclude_int=-1)
    first = lookup.next_requests()
    assert len(first) == 3 and lookup.inflight == 3
    assert lookup.next_requests() == []  # full: nothing more until something comes back
    lookup.answered(first[0], [])
    refill = lookup.next_requests()
    assert len(refill) == 1 and lookup.inflight == 3  # one slot refilled while two are still waiting
    lookup.failed(first[1])  # a dead peer frees its slot as soon as its own timeout fires
    assert len(lookup.next_requests()) == 1
