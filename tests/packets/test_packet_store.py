"""Per-signer share cap, selection of fetched values, and signing for every schema level (fallback rule)."""

from __future__ import annotations

import asyncio
import collections
import hashlib

import nacl.signing
import pytest
from qis.schema import load_schema
from qis_gateway.packet_store import cap_per_signer, select_packets, sign_for_levels, sign_for_schema
from qis_gateway.packets import PacketError, VerifiedPacketCache, verify
from qis_gateway.synthesis import synthesise_for_fields

from packets.helpers import ADDRESS, KEY_A, KEY_B, KEY_EVIL, NOW_S, OTHER_ADDRESS, ROOT, pub, signed, verified

KEYS = [nacl.signing.SigningKey(hashlib.sha256(b"signer %d" % i).digest()) for i in range(4)]


def flood(counts: list[int]) -> list:
    return [verified(KEYS[s], label="s%d" % s, created_s=NOW_S - i) for s, c in enumerate(counts) for i in range(c)]


def shares(packets: list) -> collections.Counter:
    return collections.Counter(p.label for p in packets)


def test_one_gateway_cannot_flood_a_bucket() -> None:
    kept = cap_per_signer(flood([100, 1]), 0.5)
    assert shares(kept) == {"s0": 1, "s1": 1}
    kept = cap_per_signer(flood([100, 10, 10]), 0.5)
    assert shares(kept) == {"s0": 20, "s1": 10, "s2": 10}  # s0 holds exactly half
    for max_share in (0.2, 0.34, 0.5, 0.75):
        kept = cap_per_signer(flood([60, 25, 9, 3]), max_share)
        biggest = max(shares(kept).values())
        assert biggest <= max(1, max_share * len(kept)), (max_share, shares(kept))
        # and it is the largest such selection: one more packet for the flooder would break the share
        assert biggest + 1 > max_share * (len(kept) + 1) or biggest == 60


def test_cap_keeps_each_signers_newest_and_the_input_order() -> None:
    packets = flood([5, 2])
    kept = cap_per_signer(packets, 0.5)
    assert [p.created_s for p in kept if p.label == "s0"] == [NOW_S, NOW_S - 1]
    assert kept == [p for p in packets if p in kept]


def test_cap_edge_cases() -> None:
    assert cap_per_signer([], 0.5) == []
    lone = flood([7])
    assert cap_per_signer(lone, 1.0) == lone
    assert len(cap_per_signer(lone, 0.5)) == 1  # a lone signer is heard once, not 7 times
    assert len(cap_per_signer(lone, 0.5, min_per_signer=3)) == 3
    with pytest.raises(ValueError):
        cap_per_signer(lone, 0)


def test_select_packets_verifies_dedupes_counts_and_caps() -> None:
    cache = VerifiedPacketCache()
    good = [signed(KEY_A, label="a", created_s=NOW_S - i) for i in range(4)]
    values = [b"\x01" * 32, *good, good[0], signed(KEY_EVIL, label="evil"), signed(KEY_A, address=OTHER_ADDRESS),
              signed(KEY_B, label="b")]  # fmt: skip
    trusted = {pub(KEY_A), pub(KEY_B)}
    sel = select_packets(values, ADDRESS, cache, trusted_keys=trusted, max_share=0.5)
    assert sel.rejected == {"short": 1, "untrusted": 1, "address": 1}
    assert sel.duplicates == 1
    assert shares(sel.packets) == {"a": 1, "b": 1} and sel.capped == 3
    assert shares(select_packets(values, ADDRESS, cache, trusted_keys=trusted).packets) == {"a": 4, "b": 1}


SCHEMA = load_schema(ROOT / "shared" / "qis" / "schemas" / "machine_health.json")


def reading(temp: float, vib: float, load: float = 50, current: float = 10) -> dict:
    return {"machine_class": "pump", "temperature_c": temp, "vibration_mm_s": vib, "load_pct": load,
            "current_a": current}  # fmt: skip


def test_sign_for_schema_stores_at_every_level_and_each_packet_only_fits_its_own() -> None:
    fp = SCHEMA.fingerprint(reading(70, 3.0))
    stored = sign_for_schema(SCHEMA, fp.fields, fp.vector, "bearing_wear", KEY_A, NOW_S, value=2.0, weight=0.9)
    addresses = [a for a, _ in stored]
    assert addresses == SCHEMA.level_addresses(fp.fields) and len(addresses) == 1 + len(SCHEMA.coarser)
    assert len(set(addresses)) == len(addresses)
    for address, data in stored:
        assert verify(data, address=address).label == "bearing_wear"
        for other in addresses:
            if other != address:
                with pytest.raises(PacketError):
                    verify(data, address=other)
    assert stored == sign_for_levels(addresses, SCHEMA.schema_id, NOW_S, fp.vector, "bearing_wear", KEY_A,
                                     value=2.0, weight=0.9)  # fmt: skip


def test_fallback_answers_from_the_first_level_with_enough_evidence() -> None:
    swarm: dict[bytes, list[bytes]] = collections.defaultdict(list)
    # Five pumps at other load bands (same temperature and vibration bands): they share levels 1..3 only.
    for i, load in enumerate([10, 20, 80, 85, 90]):
        fp = SCHEMA.fingerprint(reading(70, 3.0 + i / 10, load=load))
        for address, data in sign_for_schema(SCHEMA, fp.fields, fp.vector, "bearing_wear", KEY_A, NOW_S - i):
            swarm[address].append(data)
    query = SCHEMA.fingerprint(reading(70, 3.0, load=50))
    cache = VerifiedPacketCache()
    fetched: list[int] = []
    addresses = SCHEMA.level_addresses(query.fields)

    async def fetch(address: bytes) -> list:
        fetched.append(addresses.index(address))
        return select_packets(swarm.get(address, []), address, cache).packets

    summary = asyncio.run(synthesise_for_fields(query.vector, SCHEMA, query.fields, fetch, NOW_S, min_n=3))
    assert summary.enough and summary.level == 1 and summary.n == 5
    assert summary.top[0][0] == "bearing_wear" and fetched == [0, 1]
