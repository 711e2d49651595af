"""Fast, in-memory reproductions of issue 18 points 1, 5 and 6 against the swarm core's policies (the
slow ones in this directory run the same attacks against real nodes on loopback; these run in `make test`).
Values here are b"<8-byte signer>" + payload, read by a ``signer_of`` like the gateway's."""

from __future__ import annotations

import random
from dataclasses import replace

from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.node import COUNTER_NAMES
from qis_gateway.swarm.core.policy import RateLimiter
from qis_gateway.swarm.core.storage_policy import StoragePolicy
from qis_gateway.swarm.core.store import MemoryValueStore

A = b"\xaa" * 32
CFG = SwarmConfig()


def _signer(v: bytes) -> bytes:
    return v[:8]


def _v(signer: str, i: int) -> bytes:
    return signer.encode().ljust(8, b".") + b"%06d" % i


def _setup() -> tuple[StoragePolicy, MemoryValueStore, dict[str, int], list[bytes]]:
    policy, store, counters = StoragePolicy(CFG, _signer), MemoryValueStore(), dict.fromkeys(COUNTER_NAMES, 0)
    honest = [_v("honest%d" % g, i) for g in range(3) for i in range(4)]
    for n, v in enumerate(honest):
        assert policy.store(store, A, v, float(n), counters, ("10.0.0.%d" % (n // 4), 1))
    return policy, store, counters, honest


def test_one_key_flood_is_held_to_its_quota() -> None:
    policy, store, counters, honest = _setup()
    for i in range(300):
        policy.store(store, A, _v("sybil", i), 100.0 + i / 300, counters, ("10.6.6.6", 1))
    held = store.held(A)
    assert set(honest) <= set(held)
    quota = max(CFG.min_values_per_signer, int(12 * CFG.signer_quota_share))  # a later signer: half the
    assert quota == 8  # evidence seen before it, at least min_values_per_signer
    assert len(held) == 12 + quota
    assert held[-1] == _v("sybil", 299)  # at its quota a signer's own oldest value gives way
    assert counters["evicted_signer_quota"] == 300 - quota


def test_the_first_signer_at_an_address_may_hold_its_full_quota() -> None:
    policy, store, counters = StoragePolicy(CFG, _signer), MemoryValueStore(), dict.fromkeys(COUNTER_NAMES, 0)
    for i in range(40):  # a board's queued outcomes arriving together after an outage
        policy.store(store, A, _v("site", i), float(i), counters, ("10.0.0.1", 1))
    assert store.count(A) == CFG.max_values_per_signer


def test_many_keys_from_one_source_are_paced() -> None:
    policy, store, counters, honest = _setup()
    for i in range(300):
        policy.store(store, A, _v("s%d" % i, 0), 100.0 + i / 300, counters, ("10.6.6.6", 1))
    assert set(honest) <= set(store.held(A))
    assert store.count(A) == 12 + CFG.new_signer_burst
    assert counters["refused_new_signer"] == 300 - CFG.new_signer_burst
    policy.store(store, A, _v("late", 0), 100.0 + CFG.new_signer_interval_s + 1, counters, ("10.6.6.6", 1))
    assert store.count(A) == 13 + CFG.new_signer_burst  # one more after the interval


def test_a_full_address_takes_from_the_largest_then_newest_signer() -> None:
    cfg = replace(CFG, max_values_per_address=10, new_signer_burst=100.0)
    policy, store, counters = StoragePolicy(cfg, _signer), MemoryValueStore(), dict.fromkeys(COUNTER_NAMES, 0)
    for i in range(3):
        policy.store(store, A, _v("old", i), 0.0, counters, ("10.0.0.1", 1))
    for i in range(7):
        policy.store(store, A, _v("new%d" % i, 0), 1.0, counters, ("10.0.0.2", 1))
    for i in range(2):  # the largest signer ("old", 3 values) pays until it is as small as the rest
        assert policy.store(store, A, _v("newer%d" % i, 0), 2.0, counters, ("10.0.0.3", 1))
    assert [v for v in store.held(A) if v.startswith(b"old")] == [_v("old", 2)]
    # now every signer holds one value: the newest seen is the newcomer itself, so it is refused
    assert not policy.store(store, A, _v("newest", 0), 3.0, counters, ("10.0.0.3", 1))
    assert counters["refused_address_full"] == 1 and store.count(A) == 10
    assert _v("old", 2) in store.held(A)  # a signer's last value is never taken by a newcomer


def test_a_full_node_takes_from_the_coldest_address() -> None:
    cfg = replace(CFG, max_values_per_node=300)
    policy, store, counters = StoragePolicy(cfg, None), MemoryValueStore(), dict.fromkeys(COUNTER_NAMES, 0)
    busy = b"\xbb" * 32
    for i in range(200):
        policy.store(store, busy, b"busy %d" % i, 0.0, counters)
    store.values(busy, 256)  # a requester read it
    for i in range(5000):  # a flood of fresh addresses
        policy.store(store, i.to_bytes(32, "big"), b"x", 1.0, counters)
    assert store.count(busy) == 200 and store.total() == 300


def test_forged_sources_cannot_lock_out_proven_or_new_peers() -> None:
    limiter = RateLimiter(CFG, random.Random(1))
    proven, fresh = ("192.0.2.1", 1), ("192.0.2.2", 1)
    limiter.mark_proven(proven)
    forged = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(1, 4201)]
    rng = random.Random(2)
    events = [(rng.uniform(0, 10), forged[n % 4200]) for n in range(28_000)]  # 2,800/s from 4,200 sources
    events += [(rng.uniform(0, 10), "proven") for _ in range(100)]  # a proven peer: 10 datagrams/s
    events += [(rng.uniform(2, 10), "fresh") for _ in range(40)]  # a new node from t = 2 s: 5 datagrams/s
    ok = {"proven": 0, "fresh": 0}
    for now, who in sorted(events):
        addr = proven if who == "proven" else fresh if who == "fresh" else (who, 9)
        if limiter.allow(addr, now) and who in ok:
            ok[who] += 1
    assert ok["proven"] == 100
    assert ok["fresh"] >= 0.5 * 40  # shares the 2,000/s unproven budget (~70%); its requests retry the rest



def test_a_refused_value_is_not_reported_stored() -> None:
    from qis_gateway.swarm.core import wire
    from qis_gateway.swarm.core.identity import NodeIdentity
    from qis_gateway.swarm.core.node import SwarmNode

    node = SwarmNode(NodeIdentity.generate(b"n" * 32), replace(CFG, rate_limit_per_s=0.0), random.Random(1),
                     MemoryValueStore(), signer_of=_signer)
    src = ("10.6.6.6", 4000)
    asker = NodeIdentity.generate(b"a" * 32)
    node.receive_datagram(wire.encode(wire.FindNode(99, asker.node_id, None, b"\x00" * 32)), src, 1.0)
    # an unvalidated source gets a PONG with a challenge; its PROOF releases the NODES answer (and token)
    (challenge,) = [m.challenge for m in (wire.decode(d) for d, _ in node.datagrams_to_send())]
    proof = (asker.public_key, asker.sign(wire.proof_message(challenge)))
    node.receive_datagram(wire.encode(wire.Proof(0, asker.node_id, proof)), src, 1.0)
    (token,) = [m.token for m in (wire.decode(d) for d, _ in node.datagrams_to_send()) if isinstance(m, wire.Nodes)]
    stored = []
    for i in range(8):  # 8 fresh keys from one source: the first 4 are admitted
        msg = wire.Store(i, b"\x07" * 32, None, A, token, (_v("k%d" % i, 0),))
        node.receive_datagram(wire.encode(msg), src, 1.0)
        replies = [wire.decode(d) for d, _ in node.datagrams_to_send()]
        stored += [r.stored for r in replies if isinstance(r, wire.Stored)]
    assert stored == [1, 1, 1, 1, 0, 0, 0, 0]
    assert node.counters["refused_new_signer"] == 4
