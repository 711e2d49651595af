"""A multi-value put leaves out what the holders' per-signer quota would evict before the put ends
(storage_policy.StoragePolicy.surviving, node.start_put_many): holders end with the same values, and
only the survivors are sent, stored at the origin and republished; a republishing pass re-stores only
what the holders keep of earlier puts, and the origin forgets the rest."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from functools import partial

from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.events import JoinDone, PutDone
from qis_gateway.swarm.core.node import SwarmNode
from qis_gateway.swarm.core.storage_policy import StoragePolicy
from qis_gateway.swarm.core.store import MemoryValueStore

from .conftest import TEST_CONFIG, MemNet

ADDRESS = b"\x42" * 32
QUOTA = TEST_CONFIG.max_values_per_signer


def signer_of(value: bytes) -> bytes | None:
    """Test values name their signer in their first two bytes (``b"S" + signer``); others have none."""
    return value[1:2] if value[:1] == b"S" else None


def _values(signer: bytes, n: int, start: int = 0) -> list[bytes]:
    return [b"S" + signer + b"%05d" % i + b"x" * 100 for i in range(start, start + n)]


def test_surviving_keeps_each_signers_last_quota_values_in_order() -> None:
    policy = StoragePolicy(TEST_CONFIG, signer_of)
    a, b = _values(b"a", 50), _values(b"b", 10)
    anonymous = [b"anon%d" % i for i in range(40)]
    mixed = [v for pair in zip(a[:10], b, strict=True) for v in pair] + a[10:] + anonymous
    kept = policy.surviving(mixed)
    assert [v for v in kept if v[:2] == b"Sa"] == a[-QUOTA:]
    assert [v for v in kept if v[:2] == b"Sb"] == b  # under the quota: all kept
    assert [v for v in kept if v[:1] != b"S"] == anonymous  # no signer: no quota to apply
    assert kept == [v for v in mixed if v in set(kept)]  # the put's order is kept


def test_surviving_changes_nothing_at_or_under_the_quota_and_counts_a_repeat_once() -> None:
    policy = StoragePolicy(TEST_CONFIG, signer_of)
    values = _values(b"a", QUOTA)
    assert policy.surviving(values) == values
    repeated = values + values[:5]  # a holder orders a repeated value by its first store
    assert policy.surviving(repeated) == values
    assert StoragePolicy(TEST_CONFIG, None).surviving(_values(b"a", 3 * QUOTA)) == _values(b"a", 3 * QUOTA)


def test_a_holder_ends_with_the_same_values_as_when_it_is_sent_every_value() -> None:
    # Reference: the quota applied to every value of the put, in order, on top of values already held.
    held_before = _values(b"a", 20, start=900)
    put = _values(b"a", 3 * QUOTA + 7)
    ends = []
    for values in (put, StoragePolicy(TEST_CONFIG, signer_of).surviving(put)):
        policy, store, counters = StoragePolicy(TEST_CONFIG, signer_of), MemoryValueStore(), defaultdict(int)
        for v in held_before + values:
            assert policy.store(store, ADDRESS, v, 1.0, counters, ("10.0.0.1", 1))
        ends.append(store.values(ADDRESS, 1000))
    assert ends[0] == ends[1] == put[-QUOTA:]


def _net_with_signers(n: int, cfg: SwarmConfig = TEST_CONFIG, seed: int = 7) -> tuple[MemNet, list[SwarmNode]]:
    net = MemNet(seed=seed)
    make = partial(SwarmNode, signer_of=signer_of)
    nodes = [net.add(cfg, node_cls=make)]
    for _ in range(n - 1):
        node = net.add(cfg, node_cls=make)
        node.bootstrap([nodes[net.rng.randrange(len(nodes))].test_addr], net.now)
        net.wait_for(JoinDone)
        nodes.append(node)
    return net, nodes


def _stored_values_sent(net: MemNet, origin: SwarmNode) -> list[bytes]:
    """Every value ``origin`` sent in a STORE since ``net.sent`` was last cleared."""
    messages = [wire.decode(data) for src, data, _ in net.sent if src == origin.test_addr]
    return [v for m in messages if type(m) is wire.Store for v in m.values]


def test_a_put_of_more_than_the_quota_sends_stores_and_republishes_only_the_survivors() -> None:
    net, nodes = _net_with_signers(5)
    origin = nodes[0]
    values = _values(b"a", 100)
    net.sent.clear()
    origin.start_put_many(ADDRESS, values, net.now)
    (_, done), = net.wait_for(PutDone)
    assert done.replicas == 4
    for node in nodes:
        assert node.store.values(ADDRESS, 1000) == values[-QUOTA:]
    sent = _stored_values_sent(net, origin)
    assert sorted(sent) == sorted(values[-QUOTA:] * 4)  # each holder got the 32 survivors once, nothing else
    assert origin.counters["put_superseded"] == 100 - QUOTA
    assert [(a, sorted(vs)) for a, vs in origin.published.page(None, 10)] == [(ADDRESS, sorted(values[-QUOTA:]))]
    assert sum(n.counters["evicted_signer_quota"] for n in nodes) == 0  # nothing stored only to be evicted


def test_the_quota_used_is_the_configured_one() -> None:
    cfg = SwarmConfig(rate_limit_per_s=0.0, maintenance_interval_s=60.0, max_values_per_signer=8,
                      min_values_per_signer=4)
    values = _values(b"a", 30)
    random.Random(1).shuffle(values)
    assert StoragePolicy(cfg, signer_of).surviving(values) == values[-8:]


def test_the_validator_sees_only_the_values_put_and_an_invalid_one_among_them_refuses_the_lot() -> None:
    import pytest
    from qis_gateway.swarm.errors import SwarmUsageError

    seen: list[bytes] = []

    def validator(address: bytes, value: bytes) -> bool:
        seen.append(value)
        return not value.endswith(b"bad")

    net = MemNet(seed=9)
    origin = net.add(validator=validator, node_cls=partial(SwarmNode, signer_of=signer_of))
    values = _values(b"a", 50)
    origin.start_put_many(ADDRESS, values, net.now)
    assert seen == values[-QUOTA:]  # the 18 left out were not validated
    with pytest.raises(SwarmUsageError):
        origin.start_put_many(ADDRESS, _values(b"a", 40, start=100)[:-1] + [b"Sa" + b"x" * 50 + b"bad"], net.now)
    assert origin.store.values(ADDRESS, 1000) == values[-QUOTA:]  # nothing of the refused put kept


def test_republishing_re_stores_only_what_the_holders_keep_of_earlier_puts() -> None:
    # The published set keeps every value of every put; of one signer the holders keep its newest quota.
    # Re-sending the older ones made each holder store them again and evict the newer ones in turn (and
    # a page arriving out of order could end with older values held).
    cfg = replace(TEST_CONFIG, republish_interval_s=20.0, maintenance_interval_s=5.0)
    net, nodes = _net_with_signers(5, cfg, seed=11)
    origin = nodes[0]
    older, newer = _values(b"a", QUOTA), _values(b"a", QUOTA, start=QUOTA)
    for values in (older, newer):
        origin.start_put_many(ADDRESS, values, net.now)
        net.wait_for(PutDone)
    assert sorted(v for _, vs in origin.published.page(None, 10) for v in vs) == sorted(older + newer)
    evicted_before = sum(n.counters["evicted_signer_quota"] for n in nodes)
    net.sent.clear()
    net.run(until=net.now + 2 * cfg.republish_interval_s)
    sent = _stored_values_sent(net, origin)
    assert sent and set(sent) == set(newer)  # the older put's values stay home
    assert sum(n.counters["evicted_signer_quota"] for n in nodes) == evicted_before  # no churn at the holders
    for node in nodes:
        assert sorted(node.store.values(ADDRESS, 1000)) == sorted(newer)
    assert origin.counters["put_superseded"] == QUOTA  # counted once: the pass also forgot them
    assert [(a, sorted(vs)) for a, vs in origin.published.page(None, 10)] == [(ADDRESS, sorted(newer))]
