"""A node that knows nobody yet (a swarm of one): a put ends at once with zero replicas and keeps the value
locally, a get answers from the local store, and the value is handed to the first peer that joins (it
raised AttributeError inside PutOp once, and before the hand-over the value waited for the 12 h
republishing pass)."""

from __future__ import annotations

import random

from qis_gateway.swarm.config import SwarmConfig
from qis_gateway.swarm.events import GetDone, JoinDone, PutDone
from qis_gateway.swarm.identity import NodeIdentity
from qis_gateway.swarm.node import SwarmNode
from qis_gateway.swarm.store import MemoryValueStore

from tests.swarm.conftest import TEST_CONFIG, MemNet

ADDRESS = b"\x07" * 32


def test_put_with_an_empty_routing_table_reports_zero_replicas() -> None:
    node = SwarmNode(NodeIdentity.generate(b"\x01" * 32), SwarmConfig(), random.Random(1), MemoryValueStore())
    op = node.start_put(ADDRESS, b"value", 0.0)
    events = []
    while (event := node.next_event()) is not None:
        events.append(event)
    done = [e for e in events if isinstance(e, PutDone)]
    assert len(done) == 1 and done[0].op_id == op and done[0].replicas == 0
    assert node.store.count(ADDRESS) == 1  # kept locally, as the origin's own copy
    assert node.awaiting_handover == 1
    assert node.datagrams_to_send() == []


def test_a_lone_node_answers_gets_from_its_own_store(memnet: MemNet) -> None:
    node = memnet.add()
    node.start_put(ADDRESS, b"outcome", 0.0)
    memnet.wait_for(PutDone)
    node.start_get(ADDRESS, 10, 0.0)
    (_, done), = memnet.wait_for(GetDone)
    assert done.values == (b"outcome",) and done.ok


def test_values_put_alone_reach_the_first_peer_that_joins(memnet: MemNet) -> None:
    alone = memnet.add()
    alone.start_put(ADDRESS, b"outcome", memnet.now)
    alone.start_put(b"\x08" * 32, b"second", memnet.now)
    memnet.wait_for(PutDone, 2)
    memnet.run(until=memnet.now + 3 * TEST_CONFIG.maintenance_interval_s)  # ticks with nobody to hand to
    assert alone.awaiting_handover == 2
    newcomer = memnet.add()
    newcomer.bootstrap([alone.test_addr], memnet.now)
    memnet.wait_for(JoinDone)
    assert newcomer.store.count(ADDRESS) == 0  # a join alone does not move values
    memnet.run(until=memnet.now + 2 * TEST_CONFIG.maintenance_interval_s)
    assert newcomer.store.values(ADDRESS, 10) == [b"outcome"]
    assert newcomer.store.values(b"\x08" * 32, 10) == [b"second"]
    assert alone.awaiting_handover == 0


def test_a_node_with_peers_does_not_queue_hand_overs(memnet: MemNet) -> None:
    """Multi-node behaviour is unchanged: a put with contacts goes to the replicas, nothing is remembered."""
    nodes = memnet.build(4)
    nodes[1].start_put(ADDRESS, b"outcome", memnet.now)
    (_, done), = memnet.wait_for(PutDone)
    assert done.replicas == 3 and nodes[1].awaiting_handover == 0


def test_hand_over_is_paced_per_tick() -> None:
    net = MemNet()
    config = SwarmConfig(rate_limit_per_s=0.0, maintenance_interval_s=60.0, handover_per_tick=2)
    alone = net.add(config)
    for i in range(5):
        alone.start_put(bytes([i + 1]) * 32, b"v%d" % i, net.now)
    net.wait_for(PutDone, 5)
    newcomer = net.add(config)
    newcomer.bootstrap([alone.test_addr], net.now)
    net.wait_for(JoinDone)
    tick = alone.get_timer()
    assert tick is not None
    net.run(until=tick + 1.0)
    assert alone.awaiting_handover == 3
    net.run(until=tick + 2 * config.maintenance_interval_s + 1.0)
    assert alone.awaiting_handover == 0
    assert sum(newcomer.store.count(bytes([i + 1]) * 32) for i in range(5)) == 5
