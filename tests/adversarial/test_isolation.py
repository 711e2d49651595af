"""Issue 18 point 4: a legitimate burst isolated the gateway. Its peers' rate limiters shed most of its
requests, every request timed out, it evicted both peers and sat at 0 peers (nothing re-joined after
start). Now a node does not count timeouts against its contacts while nobody answers it at all, keeps a
floor of contacts, and joins again through its bootstrap addresses (and the contacts it lost) whenever
its table falls below ``rejoin_below``. Fast reproductions on the in-memory network of real node cores."""

from __future__ import annotations

from dataclasses import replace

from qis_gateway.swarm.core.events import GetDone, JoinDone
from swarm.conftest import TEST_CONFIG, MemNet

ADDR = b"\x24" * 32


def test_a_burst_that_times_out_every_request_keeps_the_contacts() -> None:
    net = MemNet(seed=4)
    nodes = net.build(4)
    net.run(until=net.now + 20.0)
    gw = nodes[3]
    assert len(gw.table) == 3
    # every answer to the gateway is lost (its peers shed its burst; its own loop is saturated)
    net.drop = lambda src, data, dst: dst == gw.test_addr
    for _ in range(200):
        gw.start_get(ADDR, 10, net.now)
    net.run(until=net.now + gw.config.isolation_grace_s - 1.0)  # a burst of total silence
    assert len(net.take(GetDone)) == 200
    assert gw.counters["timeouts"] >= 200
    assert len(gw.table) == 3, "the gateway evicted its peers because its own requests timed out"
    assert gw.counters["evictions_withheld"] > 0
    net.drop = None
    gw.start_get(ADDR, 10, net.now)
    (_, done), = net.wait_for(GetDone)
    assert done.ok


def test_a_dead_peer_is_still_evicted_while_others_answer() -> None:
    net = MemNet(seed=5)
    nodes = net.build(6)
    net.run(until=net.now + 20.0)
    gw, dead = nodes[5], nodes[0]
    net.dead.add(dead.test_addr)
    for _ in range(5):
        gw.start_get(ADDR, 10, net.now)
        net.wait_for(GetDone, limit_s=30.0)
    net.run(until=net.now + 30.0)
    assert gw.table.find(int.from_bytes(dead.node_id, "big")) is None
    assert len(gw.table) == 4


def test_a_node_that_joined_nobody_rejoins_within_10_s() -> None:
    net = MemNet(seed=6)
    nodes = net.build(4)
    net.run(until=net.now + 20.0)
    boot = nodes[0]
    net.dead.add(boot.test_addr)  # the bootstrap is down (or shed the restarted gateway's PINGs)
    gw = net.add()
    gw.bootstrap([boot.test_addr], net.now)
    (_, joined), = net.wait_for(JoinDone)
    assert joined.contacts == 0
    net.dead.discard(boot.test_addr)
    back = net.now
    net.run(until=back + 10.0)
    assert len(gw.table) >= 2, "a node with 0 peers never tried its bootstrap again"
    assert gw.counters["rejoins"] >= 1


def test_a_node_that_lost_every_peer_rejoins_through_them() -> None:
    net = MemNet(seed=7)
    nodes = net.build(5)
    net.run(until=net.now + 20.0)
    gw = nodes[4]
    for n in nodes[:4]:
        gw.table.remove(int.from_bytes(n.node_id, "big"))
        gw.rpc.isolation.lost_contact(n.test_addr)  # as if evicted after real failures
    assert len(gw.table) == 0
    net.run(until=net.now + 10.0 + gw.config.maintenance_interval_s)
    assert len(gw.table) >= 2


def test_a_lone_peer_that_died_is_evicted_after_the_grace() -> None:
    """Total silence that lasts is not our fault: the only peer died, the node must work alone."""
    net = MemNet(seed=8)
    peer, gw = net.build(2)
    net.run(until=net.now + 20.0)
    assert len(gw.table) == 1
    net.dead.add(peer.test_addr)
    start = net.now
    while len(gw.table) and net.now < start + 30.0:
        gw.start_get(ADDR, 10, net.now)
        net.wait_for(GetDone, limit_s=10.0)
    assert len(gw.table) == 0
    assert net.now - start >= gw.config.isolation_grace_s
    net.dead.discard(peer.test_addr)
    net.run(until=net.now + 10.0)
    assert len(gw.table) == 1  # the rejoin found it again


def test_a_peer_shedding_load_answers_busy_and_is_not_evicted() -> None:
    """Back-pressure: a proven peer whose requests the rate limiter refuses gets BUSY (one per 50 ms),
    not silence; the requester holds none of those failures against the peer."""
    net = MemNet(seed=9)
    strict = replace(TEST_CONFIG, rate_limit_per_s=5.0, rate_limit_burst=10.0)
    nodes = [net.add(strict) for _ in range(3)]
    for n in nodes[1:]:
        n.bootstrap([nodes[0].test_addr], net.now)
        net.wait_for(JoinDone)
    gw = net.add()  # no limit of its own
    gw.bootstrap([nodes[0].test_addr], net.now)
    net.wait_for(JoinDone)
    net.run(until=net.now + 5.0)
    assert len(gw.table) == 3
    for _ in range(300):
        gw.start_get(ADDR, 10, net.now)
    net.run(until=net.now + 30.0)
    assert sum(n.counters["drop_rate_limited"] for n in nodes) > 300
    assert sum(n.counters["busy_sent"] for n in nodes) > 0
    assert gw.counters["busy_in"] > 0
    assert len(gw.table) == 3
