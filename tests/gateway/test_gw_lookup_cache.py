"""The per-address lookup cache and the reused column stores (evidence.py, columns.py): one swarm get per
address per `lookup_cache_s`, readings during a lookup share it, the gateway's own puts refresh it, and
every summary equals the slow path's (no cache, a fresh column store) bit for bit."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import nacl.signing
import numpy as np
import pytest
from qis_gateway.columns import PacketColumns
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import Evidence
from qis_gateway.flusher import OutboxFlusher
from qis_gateway.metrics import Metrics
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import OutcomePacket, PacketError, encode, verify

from .helpers import MemorySwarm, make_rig

KEYS = [nacl.signing.SigningKey(hashlib.sha256(b"cache signer %d" % i).digest()) for i in range(6)]
ADDRESS = hashlib.sha256(b"the address").digest()
NOW = 1_790_000_000
VECTOR = (3, -1, 4, 1, -5, 9, 2, -6)


def packet(i: int, address: bytes = ADDRESS, vector: tuple[int, ...] = VECTOR) -> bytes:
    rnd = random.Random(i)
    vec = tuple(max(-127, min(127, v + rnd.randint(-3, 3))) for v in vector)
    label = ("normal", "bearing_wear", "misalignment")[i % 3]
    p = OutcomePacket(address, "s" * 16, NOW - 60 * i, vec, label, value=None if i % 4 else float(i) / 7)
    return encode(p, KEYS[i % len(KEYS)])


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(swarm: MemorySwarm, cache_s: float, clock: Clock | None = None) -> Evidence:
    return Evidence(swarm, VerifiedPacketCache(1000), Metrics(), SynthesisSettings(min_n=1), lookup_limit=256,
                    clock=lambda: float(NOW), lookup_cache_s=cache_s, monotonic=clock or Clock())


def test_one_get_per_address_while_fresh_then_again_after_expiry() -> None:
    swarm = MemorySwarm({ADDRESS: [packet(i) for i in range(20)]})
    clock = Clock()
    evidence = make(swarm, 1.0, clock)

    async def run() -> None:
        for _ in range(5):
            await evidence.summarise(VECTOR, [ADDRESS])
        assert swarm.gets == 1
        clock.t += 1.01
        await evidence.summarise(VECTOR, [ADDRESS])
        assert swarm.gets == 2

    asyncio.run(run())


def test_without_the_cache_every_reading_looks_up() -> None:
    swarm = MemorySwarm({ADDRESS: [packet(i) for i in range(20)]})
    evidence = make(swarm, 0.0)
    for _ in range(3):
        asyncio.run(evidence.summarise(VECTOR, [ADDRESS]))
    assert swarm.gets == 3


class SlowSwarm(MemorySwarm):
    async def get(self, address: bytes, limit: int = 200):  # noqa: ANN201
        await asyncio.sleep(0.05)
        return await super().get(address, limit)


def test_readings_during_a_lookup_share_it() -> None:
    swarm = SlowSwarm({ADDRESS: [packet(i) for i in range(20)]})
    evidence = make(swarm, 1.0)

    async def run() -> list:
        return await asyncio.gather(*(evidence.summarise(VECTOR, [ADDRESS]) for _ in range(10)))

    answers = asyncio.run(run())
    assert swarm.gets == 1 and evidence.cache_hits == 9
    assert len({(a.n, a.top, a.conf) for a in answers}) == 1


def five_cached() -> tuple[dict[bytes, list[bytes]], MemorySwarm, Evidence]:
    """An address holding 5 packets, looked up once into a 60 s cache: (what the swarm holds, swarm, evidence)."""
    shared = {ADDRESS: [packet(i) for i in range(5)]}
    swarm = MemorySwarm(shared)
    evidence = make(swarm, 60.0)
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 5
    return shared, swarm, evidence


def test_a_failed_put_makes_the_next_reading_look_up_again() -> None:
    shared, swarm, evidence = five_cached()
    shared[ADDRESS].append(packet(5))
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 5  # cached: another gateway's put waits
    evidence.forget(ADDRESS)
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 6
    assert swarm.gets == 2


def test_an_own_put_counts_at_once_without_a_new_lookup() -> None:
    shared, swarm, evidence = five_cached()
    shared[ADDRESS].append(packet(6))  # another gateway's: waits for the entry to expire
    shared[ADDRESS].append(packet(5))
    evidence.absorb(ADDRESS, [packet(5)])  # ours: counts from the next reading on
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 6
    evidence.absorb(ADDRESS, [packet(5)])  # the same bytes again (a retried put): counted once
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 6
    assert swarm.gets == 1


def test_absorbed_puts_stay_within_the_lookup_limit() -> None:
    swarm = MemorySwarm({ADDRESS: [packet(i) for i in range(5)]})
    evidence = Evidence(swarm, VerifiedPacketCache(1000), Metrics(), SynthesisSettings(min_n=1), lookup_limit=8,
                        clock=lambda: float(NOW), lookup_cache_s=60.0, monotonic=Clock())
    asyncio.run(evidence.summarise(VECTOR, [ADDRESS]))
    evidence.absorb(ADDRESS, [packet(i) for i in range(5, 12)])
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 8
    assert swarm.gets == 1


def test_a_value_the_swarm_node_kept_counts_at_the_next_reading_without_a_lookup() -> None:
    """`heard`: another gateway's STORE at this gateway's node (a holder of the address)."""
    shared, swarm, evidence = five_cached()
    shared[ADDRESS].append(packet(5))
    evidence.heard(ADDRESS, packet(5))
    evidence.heard(ADDRESS, packet(5))  # the same bytes again (a republish): counted once
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 6
    assert swarm.gets == 1


def test_values_heard_for_an_address_not_cached_are_not_kept() -> None:
    evidence = make(MemorySwarm({ADDRESS: [packet(i) for i in range(5)]}), 60.0)
    other = hashlib.sha256(b"never looked up").digest()
    for i in range(1000):
        evidence.heard(other, packet(i, other))
    assert evidence._heard == {} and evidence._late_puts == {}


def test_values_heard_between_readings_wait_bounded_and_merge_once() -> None:
    swarm = MemorySwarm({ADDRESS: [packet(i) for i in range(5)]})
    evidence = Evidence(swarm, VerifiedPacketCache(1000), Metrics(), SynthesisSettings(min_n=1), lookup_limit=8,
                        clock=lambda: float(NOW), lookup_cache_s=60.0, monotonic=Clock())
    asyncio.run(evidence.summarise(VECTOR, [ADDRESS]))
    for i in range(5, 105):
        evidence.heard(ADDRESS, packet(i))
    assert len(evidence._heard[ADDRESS]) <= 2 * 8
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 8
    assert ADDRESS not in evidence._heard and swarm.gets == 1


@pytest.mark.parametrize("how", ["stored", "heard", "failed"])
def test_a_put_that_ends_during_a_lookup(how: str) -> None:
    """Stored (own put) or heard (the node kept a peer's): its packets join the lookup's result in the
    cache (no new lookup). Failed: the result is kept out of the cache (the next reading looks again)."""
    shared = {ADDRESS: [packet(i) for i in range(5)]}
    swarm = SlowSwarm(shared)
    evidence = make(swarm, 60.0)

    async def run() -> None:
        reading = asyncio.ensure_future(evidence.summarise(VECTOR, [ADDRESS]))
        await asyncio.sleep(0.01)
        shared[ADDRESS].append(packet(5))  # the lookup under way may not see it
        if how == "stored":
            evidence.absorb(ADDRESS, [packet(5)])
        elif how == "heard":
            evidence.heard(ADDRESS, packet(5))
        else:
            evidence.forget(ADDRESS)
        assert (await reading).n in (5, 6)
        assert (await evidence.summarise(VECTOR, [ADDRESS])).n == 6

    asyncio.run(run())
    assert swarm.gets == (2 if how == "failed" else 1)


def test_an_unreachable_swarm_is_not_cached() -> None:
    swarm = MemorySwarm({ADDRESS: [packet(i) for i in range(5)]})
    evidence = make(swarm, 60.0)
    swarm.available = False
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 0
    swarm.available = True
    assert asyncio.run(evidence.summarise(VECTOR, [ADDRESS])).n == 5


def flush_one_outcome(tmp_path: Path, swarm_up: bool) -> tuple[Told, set[bytes], int]:
    """A board's fp and outcome admitted, then one flusher pass: what the cache was told, the outcome's
    addresses, and the rows still pending."""
    rig = make_rig(tmp_path)
    board = rig.board()
    t, frame, seq = board.fp()
    rig.bridge.admit(t, frame)
    t, frame, _ = board.outcome(seq, "x")
    rig.bridge.admit(t, frame)
    addresses = {item.address for item in rig.state.due(NOW * 2.0, limit=100)}
    rig.swarm.available = swarm_up
    told = Told()
    asyncio.run(OutboxFlusher(rig.state, rig.swarm, rig.metrics, lookup_cache=told)._flush_once())
    for address, values in told.absorbed.items():
        assert set(values) <= set(rig.swarm.shared[address])  # what was absorbed is what the swarm holds
    pending = rig.state.pending()
    rig.close()
    return told, addresses, pending


def test_the_flusher_tells_the_cache_about_its_puts(tmp_path: Path) -> None:
    told, addresses, pending = flush_one_outcome(tmp_path, swarm_up=True)
    assert len(addresses) >= 2
    assert set(told.absorbed) == addresses and not told.forgotten and pending == 0


def test_a_failed_put_makes_the_cache_forget_its_address(tmp_path: Path) -> None:
    told, addresses, pending = flush_one_outcome(tmp_path, swarm_up=False)
    assert set(told.forgotten) == addresses and not told.absorbed and pending > 0


class Told:
    """Records what the flusher tells the lookup cache."""

    def __init__(self) -> None:
        self.absorbed: dict[bytes, list[bytes]] = {}
        self.forgotten: list[bytes] = []

    def absorb(self, address: bytes, values: list[bytes]) -> None:
        self.absorbed.setdefault(address, []).extend(values)

    def forget(self, address: bytes) -> None:
        self.forgotten.append(address)


# -- summaries equal to the slow path's ---------------------------------------------------------------------
def columns_equal(a: PacketColumns, b: PacketColumns) -> bool:
    return (a.labels == b.labels and a.row_ids() == b.row_ids() and a.dims == b.dims
            and all(np.array_equal(x, y, equal_nan=True) for x, y in (
                (a.vectors, b.vectors), (a.inv_norm, b.inv_norm), (a.codes, b.codes), (a.weights, b.weights),
                (a.times, b.times), (a.values, b.values))))


def test_reused_column_stores_equal_a_fresh_build_bit_for_bit() -> None:
    pool = [verify(packet(i), None, ADDRESS) for i in range(120)]
    rnd = random.Random(7)
    previous: PacketColumns | None = None
    chosen: list[OutcomePacket] = []
    for step in range(40):
        if step % 5:  # a new selection, mostly overlapping the last in another order
            chosen = rnd.sample(pool, rnd.randint(1, 100))
        rebuilt = PacketColumns.reusing(chosen, ADDRESS, previous)
        assert columns_equal(rebuilt, PacketColumns.from_packets(chosen, ADDRESS))
        if step % 5 == 0 and previous is not None:
            assert rebuilt is previous  # nothing changed: the same store
        previous = rebuilt


def test_reusing_refuses_what_a_fresh_build_refuses() -> None:
    good = [verify(packet(i), None, ADDRESS) for i in range(5)]
    previous = PacketColumns.from_packets(good, ADDRESS)
    other = verify(packet(9, address=ADDRESS[::-1]), None, ADDRESS[::-1])
    with pytest.raises(PacketError):
        PacketColumns.reusing([*good, other], ADDRESS, previous)
    longer = verify(packet(10, vector=VECTOR + (1,)), None, ADDRESS)
    with pytest.raises(PacketError):
        PacketColumns.reusing([*good, longer], ADDRESS, previous)


def test_cached_summaries_equal_the_slow_paths() -> None:
    shared: dict[bytes, list[bytes]] = {ADDRESS: []}
    fast = make(MemorySwarm(shared), 60.0)
    slow = make(MemorySwarm(shared), 0.0)
    rnd = random.Random(3)
    for i in range(60):
        shared[ADDRESS].append(packet(i))
        if rnd.random() < 0.2 and len(shared[ADDRESS]) > 3:
            shared[ADDRESS].pop(rnd.randrange(len(shared[ADDRESS])))
        fast.forget(ADDRESS)  # as after an own put: the change is seen at once
        query = tuple(rnd.randint(-9, 9) for _ in VECTOR)
        for _ in range(2):
            a = asyncio.run(fast.summarise(query, [ADDRESS]))
            b = asyncio.run(slow.summarise(query, [ADDRESS]))
            assert (a.enough, a.n, a.top, a.conf, a.mean, a.level, a.hops) == (
                b.enough, b.n, b.top, b.conf, b.mean, b.level, b.hops)


def test_summaries_after_absorbed_puts_equal_the_slow_paths() -> None:
    """When this gateway is the only writer, absorbing its puts gives what a lookup after each put gives."""
    shared: dict[bytes, list[bytes]] = {ADDRESS: [packet(i) for i in range(3)]}
    fast_swarm = MemorySwarm(shared)
    fast = make(fast_swarm, 60.0)
    slow = make(MemorySwarm(shared), 0.0)
    rnd = random.Random(4)
    for i in range(3, 80):
        shared[ADDRESS].append(packet(i))
        fast.absorb(ADDRESS, [packet(i)])
        query = tuple(rnd.randint(-9, 9) for _ in VECTOR)
        a = asyncio.run(fast.summarise(query, [ADDRESS]))
        b = asyncio.run(slow.summarise(query, [ADDRESS]))
        assert (a.enough, a.n, a.top, a.conf, a.mean, a.level, a.hops) == (
            b.enough, b.n, b.top, b.conf, b.mean, b.level, b.hops)
    assert fast_swarm.gets == 1


OWN = nacl.signing.SigningKey(hashlib.sha256(b"this gateway").digest())


def own_packet(i: int) -> bytes:
    return encode(OutcomePacket(ADDRESS, "s" * 16, NOW - 1 + i % 2, VECTOR, "normal", nonce=b"%016d" % i), OWN)


@pytest.mark.parametrize("bounded", [True, False])
def test_absorbed_puts_are_bounded_per_signer_like_the_holders_keep_them(bounded: bool) -> None:
    """Holders keep each signer's newest QUOTA packets per address: a burst of own puts absorbed into the
    cached lookup must not push the other gateways' packets out of it (a lookup still returns them)."""
    quota = 8
    others = [packet(i) for i in range(6 * quota)]  # 6 other gateways, as many packets each as holders keep
    shared: dict[bytes, list[bytes]] = {ADDRESS: list(others)}
    fast_swarm = MemorySwarm(shared)

    def evidence(swarm: MemorySwarm, cache_s: float) -> Evidence:
        return Evidence(swarm, VerifiedPacketCache(1000), Metrics(), SynthesisSettings(min_n=1), lookup_limit=100,
                        clock=lambda: float(NOW), lookup_cache_s=cache_s, monotonic=Clock(),
                        values_per_signer=quota if bounded else None)

    fast, slow = evidence(fast_swarm, 60.0), evidence(MemorySwarm(shared), 0.0)
    asyncio.run(fast.summarise(VECTOR, [ADDRESS]))  # the lookup that gets cached
    for put in range(5):
        values = [own_packet(40 * put + j) for j in range(40)]
        own_held = [v for v in shared[ADDRESS] if v not in others] + values
        shared[ADDRESS] = others + own_held[-quota:]  # what the holders keep
        fast.absorb(ADDRESS, values)
    a = asyncio.run(fast.summarise(VECTOR, [ADDRESS]))  # merges the absorbed puts into the entry
    b = asyncio.run(slow.summarise(VECTOR, [ADDRESS]))
    cached = fast._lookups[ADDRESS].values
    assert fast_swarm.gets == 1
    same = (a.n, a.top, a.conf, a.mean) == (b.n, b.top, b.conf, b.mean)
    if bounded:
        assert sorted(cached) == sorted(shared[ADDRESS]) and same
    else:  # the failure this guards against: 200 own packets crowd every other gateway's out of the cache
        assert not any(v in others for v in cached) and not same


def test_the_per_signer_bound_is_the_kademlia_nodes_quota_and_none_elsewhere(tmp_path: Path) -> None:
    from qis_gateway.backend import make_udp_swarm, values_per_signer
    from qis_gateway.swarm import SwarmConfig

    node = make_udp_swarm(("127.0.0.1", 0), tmp_path, [], None)
    assert values_per_signer(node) == SwarmConfig().max_values_per_signer == 32
    assert values_per_signer(MemorySwarm({})) is None
