"""The gateway's one synthesis path (evidence.py), driven through the Bridge as the service runs it:
per-signer cap, Byzantine values, trust list, newest packets first, level fallback. Removing the
bridge's call into `Evidence.select`/`select_packets` makes these fail."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from qis_gateway.config import SynthesisSettings
from qis_gateway.evidence import BoardSummary, cap_per_signer
from qis_gateway.packets import OutcomePacket, encode, verify

from .helpers import MACHINE, Rig, make_rig, metric

KEYS = [nacl.signing.SigningKey(hashlib.sha256(b"signer %d" % i).digest()) for i in range(8)]
EVIL = nacl.signing.SigningKey(hashlib.sha256(b"flooder").digest())
NOW = 1_790_000_000


class Reading:
    """One board reading admitted by the rig's bridge: its level addresses and vector."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.board = rig.board()
        t, frame, seq = self.board.fp()
        rig.bridge.admit(t, frame)
        stored = rig.state.reading(self.board.device, seq)
        self.addresses = MACHINE.level_addresses(stored.fields)
        self.vector = stored.vector

    def store(self, level: int, key: nacl.signing.SigningKey, label: str, created_s: int,
              vector: tuple[int, ...] | None = None) -> bytes:
        address = self.addresses[level]
        packet = OutcomePacket(address, MACHINE.schema_id, created_s, vector or self.vector, label)
        data = encode(packet, key)
        self.rig.swarm.shared.setdefault(address, []).append(data)
        return data

    def answer(self) -> BoardSummary:
        t, frame, _ = self.board.fp()
        admitted = self.rig.bridge.admit(t, frame)
        assert admitted.outcome == "accepted", admitted
        return asyncio.run(self.rig.bridge.answer_fp(admitted))


def rig_with(tmp_path: Path, **settings: Any) -> Rig:
    return make_rig(tmp_path, settings=SynthesisSettings(**{"min_n": 1, **settings}),
                    clock=lambda: float(NOW))


# -- the per-signer cap --------------------------------------------------------------------------------------
def test_one_key_flooding_an_address_holds_at_most_its_share(tmp_path: Path) -> None:
    rig = rig_with(tmp_path, max_signer_share=0.25, min_per_signer=1)
    reading = Reading(rig)
    for i in range(12):  # honest evidence from three sites
        reading.store(0, KEYS[i % 3], "bearing_wear", NOW - 3600 - i)
    for i in range(300):  # one key, all newer
        reading.store(0, EVIL, "all_clear", NOW - i)
    out = reading.answer()
    shares = dict(out.top)
    # every honest signer keeps its 4 packets; the flooder at most a quarter of the selection
    assert out.n == 16 and shares["bearing_wear"] == 750 and shares["all_clear"] == 250


def test_each_signer_always_keeps_min_per_signer_and_the_newest_of_them(tmp_path: Path) -> None:
    rig = rig_with(tmp_path, max_signer_share=0.5, min_per_signer=3)
    reading = Reading(rig)
    for i in range(10):  # a lone signer: old packets say "old", its 3 newest say "new"
        reading.store(0, KEYS[0], "new" if i < 3 else "old", NOW - 100 * i)
    out = reading.answer()
    assert out.n == 3 and out.top == (("new", 1000),)


def test_the_cap_is_the_largest_selection_with_no_signer_above_its_share() -> None:
    def flood(counts: list[int]) -> list[OutcomePacket]:
        packets = [verify(encode(OutcomePacket(b"\x01" * 32, "s/1", NOW - i, (1,), "s%d" % s), KEYS[s]))
                   for s, c in enumerate(counts) for i in range(c)]
        return sorted(packets, key=lambda p: p.created_s, reverse=True)

    def shares(packets: list[OutcomePacket]) -> collections.Counter:
        return collections.Counter(p.label for p in packets)

    assert shares(cap_per_signer(flood([100, 1]), 0.5, 1, 1000)) == {"s0": 1, "s1": 1}
    assert shares(cap_per_signer(flood([100, 10, 10]), 0.5, 1, 1000)) == {"s0": 20, "s1": 10, "s2": 10}
    for max_share in (0.2, 0.34, 0.5, 0.75):
        kept = cap_per_signer(flood([60, 25, 9, 3]), max_share, 1, 1000)
        biggest = max(shares(kept).values())
        assert biggest <= max(1, max_share * len(kept)), (max_share, shares(kept))
        assert biggest + 1 > max_share * (len(kept) + 1) or biggest == 60  # one more would break the share
    # the budget is shared out evenly, newest first, and never exceeded
    kept = cap_per_signer(flood([60, 25, 9, 3]), 1.0, 1, 30)
    assert shares(kept) == {"s0": 9, "s1": 9, "s2": 9, "s3": 3}
    assert len(cap_per_signer(flood([1] * 8), 1.0, 1, 5)) == 5
    packets = flood([7, 2])
    kept = cap_per_signer(packets, 1.0, 50, 1000)
    assert kept == packets  # input order (newest first) kept
    assert cap_per_signer([], 0.5, 1, 10) == []
    with pytest.raises(ValueError):
        cap_per_signer(packets, 0, 1, 10)


# -- recency: the newest packets count -----------------------------------------------------------------------
def test_an_address_holding_more_than_is_synthesised_uses_its_newest_packets(tmp_path: Path) -> None:
    rig = rig_with(tmp_path)  # the configured lookup_limit (256) and max_packets (200)
    reading = Reading(rig)
    # 256 packets as a node keeps them, oldest first; the newest 56 say something else
    for i in range(256):
        reading.store(0, KEYS[i % 8], "new" if i >= 200 else "old", NOW - 10_000 + i)
    out = reading.answer()
    assert out.n == 200
    assert dict(out.top)["new"] > 56 / 200 * 1000 * 0.9  # all 56 newest counted (recency weighs them more)


def test_the_swarm_is_asked_for_lookup_limit_values(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, settings=SynthesisSettings(min_n=1), lookup_limit=30)
    reading = Reading(rig)
    for i in range(40):
        reading.store(0, KEYS[i % 8], "x", NOW - i)
    assert reading.answer().n == 30


# -- Byzantine values and the trust list -----------------------------------------------------------------
def test_no_rejected_value_ever_reaches_a_summary(tmp_path: Path) -> None:
    rig = rig_with(tmp_path)
    reading = Reading(rig)
    good = [reading.store(0, KEYS[i % 2], "ok", NOW - i) for i in range(5)]
    exact = reading.addresses[0]
    # Every bad value says "EVIL": one leaking in would show in the distribution.
    base = encode(OutcomePacket(exact, MACHINE.schema_id, NOW, reading.vector, "EVIL"), KEYS[0])
    bad = [base[:i] + bytes([base[i] ^ 0x01]) + base[i + 1:] for i in range(len(base))]
    bad += [base[:-1], base + b"\x00", b"", b"\x01" * 32]
    bad += [encode(OutcomePacket(reading.addresses[1], MACHINE.schema_id, NOW, reading.vector, "EVIL"), KEYS[0])]
    rig.swarm.shared[exact] = bad + good + good[:2]  # and two duplicates
    out = reading.answer()
    assert out.n == 5 and out.top == (("ok", 1000),)
    counted = sum(metric(rig.metrics, "qis_gateway_invalid_packets_total", reason=r)
                  for r in ("version", "field", "short", "long", "signature", "address"))
    assert counted == len(bad)
    # control: the untampered EVIL packet is valid and would be counted
    rig.swarm.shared[exact] = [base, *good]
    assert "EVIL" in dict(reading.answer().top)


def test_a_permissioned_gateway_counts_trusted_signers_only(tmp_path: Path) -> None:
    trusted = frozenset(bytes(k.verify_key) for k in KEYS[:2])
    rig = make_rig(tmp_path, settings=SynthesisSettings(min_n=1), trusted_keys=trusted)
    reading = Reading(rig)
    for i in range(4):
        reading.store(0, KEYS[i % 2], "ok", NOW - i)
        reading.store(0, EVIL, "EVIL", NOW - i)
    out = reading.answer()
    assert out.n == 4 and out.top == (("ok", 1000),)
    assert metric(rig.metrics, "qis_gateway_invalid_packets_total", reason="untrusted") == 4


# -- level fallback ----------------------------------------------------------------------------------------
def test_the_first_level_with_enough_evidence_answers(tmp_path: Path) -> None:
    rig = rig_with(tmp_path, min_n=3)
    reading = Reading(rig)
    reading.store(0, KEYS[0], "exact", NOW)  # too little at the exact address
    for i in range(3):
        reading.store(1, KEYS[i], "level1", NOW - i)
    for i in range(8):  # more at level 2, but level 1 already has enough
        reading.store(2, KEYS[i], "level2", NOW - i)
    gets = rig.swarm.gets
    out = reading.answer()
    assert out.enough and out.level == 1 and out.top[0][0] == "level1" and out.n == 3
    assert rig.swarm.gets - gets == 2  # level 2 was never looked up


def test_with_enough_nowhere_the_level_holding_most_answers(tmp_path: Path) -> None:
    rig = rig_with(tmp_path, min_n=50)
    reading = Reading(rig)
    for i in range(4):
        reading.store(0, KEYS[i], "exact", NOW - i)
    reading.store(1, KEYS[0], "level1", NOW)
    out = reading.answer()
    assert not out.enough and out.level == 0 and out.n == 4 and out.top == ()


def test_an_unreachable_swarm_answers_with_what_the_finer_levels_gave(tmp_path: Path) -> None:
    rig = rig_with(tmp_path, min_n=3)
    reading = Reading(rig)
    reading.rig.swarm.available = False
    out = reading.answer()
    assert (out.enough, out.n, out.level, out.top) == (False, 0, 0, ())
