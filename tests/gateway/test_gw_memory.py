"""The gateway's memory bounds (the HIL soak's RSS growth, docs/gateway.md "Memory").

The soak's growth was the verified-packet cache filling: every node verifies (and cached) every packet
stored at it, 24,000 in the soak, at ~660 bytes each. These tests hold the cache to its cap, its entries
to their measured size (repeated fields shared) and the sharing table to its own bound.
"""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import nacl.signing
import pytest
from qis_gateway import packet_cache, packets
from qis_gateway.packet_cache import VerifiedPacketCache
from qis_gateway.packets import OutcomePacket, encode
from qis_gateway.service import VERIFIED_CACHE_ENTRIES

KEYS = [nacl.signing.SigningKey(hashlib.sha256(b"gateway %d" % i).digest()) for i in range(8)]
ADDRESSES = [hashlib.sha256(b"bucket %d" % i).digest() for i in range(40)]
LABELS = ("normal", "bearing_wear", "bearing_failure")
NOW_S = 1_800_000_000
# Measured per cached packet (CPython 3.11, 3-value vectors): 658 bytes before sharing, 405 after.
MAX_BYTES_PER_ENTRY = 480


def signed_packets(n: int, seed: int = 1, labels: tuple[str, ...] = LABELS) -> list[bytes]:
    """What a soak's swarm holds: many packets over few addresses, few gateways, few labels."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        packet = OutcomePacket(rng.choice(ADDRESSES), "machine-health/1", NOW_S - i,
                               tuple(rng.randrange(-127, 128) for _ in range(3)), rng.choice(labels))
        out.append(encode(packet, rng.choice(KEYS)))
    return out


def test_cached_packets_share_repeated_fields_and_stay_small() -> None:
    data = signed_packets(2000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = VerifiedPacketCache(max_entries=len(data))
        for value in data:
            cache.verify(value)
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / len(data)
    finally:
        tracemalloc.stop()
    cached = [cache.verify(value) for value in data]
    assert len({id(p.address) for p in cached}) == len({p.address for p in cached}) <= len(ADDRESSES)
    assert len({id(p.origin_key) for p in cached}) <= len(KEYS)
    assert len({id(p.label) for p in cached}) <= len(LABELS)
    assert per_entry < MAX_BYTES_PER_ENTRY, "a cached packet costs %.0f bytes" % per_entry


def test_shared_packets_read_back_exactly_what_was_signed() -> None:
    data = signed_packets(300, seed=2)
    cache = VerifiedPacketCache(max_entries=100)
    for value in data:
        got = cache.verify(value)
        plain = packets.verify(value)
        assert got == plain and got.packet_id == plain.packet_id and got.origin_key == plain.origin_key


def test_cache_stays_at_its_cap_however_many_packets_pass() -> None:
    data = signed_packets(600, seed=3)
    cache = VerifiedPacketCache(max_entries=150)
    for value in data:
        cache.verify(value)
        assert len(cache) <= 150
    assert len(cache) == 150 and cache.misses == 600
    assert all(cache.verify(v).packet_id in cache for v in data[-150:])  # the newest are the ones kept


def test_sharing_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packet_cache, "SHARED_VALUES", 16)
    labels = tuple("label-%d" % i for i in range(200))
    data = signed_packets(400, seed=4, labels=labels)
    cache = VerifiedPacketCache(max_entries=1000)
    for value in data:
        cache.verify(value)
        assert len(cache._shared) <= 16
    assert [cache.verify(v).label for v in data] == [packets.verify(v).label for v in data]


def test_the_service_cache_cap_fits_the_unit_memory_budget() -> None:
    # 10,000 x 405 bytes is ~4 MB traced (~5 MB resident): with SQLite's page caches (~6.5 MB, levelled) the
    # soak's steady state stays well under 1.5x its warm-up RSS (~50 MB).
    assert VERIFIED_CACHE_ENTRIES * MAX_BYTES_PER_ENTRY <= 5 * 1024 * 1024
