"""Fast, in-memory reproductions of issue 18 point 2 against the swarm core's operations: one real
``SwarmNode`` whose only contact is a hostile holder answered by hand (message objects, driver time set
by the test). The real-node version with ground ids is ``test_sybil_holders.py``."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.events import GetDone, PutDone
from qis_gateway.swarm.core.identity import NodeIdentity
from qis_gateway.swarm.core.node import SwarmNode
from qis_gateway.swarm.core.routing import Contact
from qis_gateway.swarm.core.store import MemoryValueStore

ADDRESS = hashlib.sha256(b"address").digest()
PEER = NodeIdentity.generate(b"p" * 32)
PEER_ADDR = ("10.0.0.2", 7000)
CFG = SwarmConfig(rate_limit_per_s=0.0)


def _node(cfg: SwarmConfig = CFG, validator: Any = None) -> SwarmNode:
    node = SwarmNode(NodeIdentity.generate(b"n" * 32), cfg, random.Random(1), MemoryValueStore(), validator)
    node.table.add_proven(Contact(PEER.node_id, PEER_ADDR), 0.0)  # proven: its answers need no proof
    return node


def _values(msg: wire.FindValue, offset: int, total: int, values: tuple[bytes, ...]) -> wire.Values:
    return wire.Values(msg.tid, PEER.node_id, None, None, b"t" * 8, offset, total, b"\x01" * 8, values, ())


def _find_values(out: list[tuple[Any, Any]]) -> list[wire.FindValue]:
    return [m for m, addr in out if type(m) is wire.FindValue and addr == PEER_ADDR]


def _events(node: SwarmNode) -> list[Any]:
    out = []
    ev = node.next_event()
    while ev is not None:
        out.append(ev)
        ev = node.next_event()
    return out


def _serve(node: SwarmNode, answer: Any, rounds: int = 2000, step_s: float = 0.001) -> tuple[int, list[Any]]:
    """Answer every FIND_VALUE to the peer with ``answer(msg, i)``; returns (requests, events)."""
    now = 0.0
    node.start_get(ADDRESS, 1000, now)
    asked = 0
    events: list[Any] = []
    for i in range(rounds):
        now += step_s
        node.handle_timer(now)
        reqs = _find_values(node.messages_to_send())
        events += _events(node)
        if not reqs:
            break
        for msg in reqs:
            asked += 1
            node.receive_message(answer(msg, i), PEER_ADDR, now)
    return asked, events + _events(node)


def _fresh(i: int) -> tuple[bytes, ...]:
    return (b"value %06d" % i,)


def test_an_echoed_offset_other_than_the_one_asked_drops_the_holder() -> None:
    node = _node()
    asked, events = _serve(node, lambda msg, i: _values(msg, 0, 1 << 30, _fresh(i)))  # always "offset 0"
    # the first answer, then the window of pages it opened; the first wrong offset drops the holder
    # and the rest of the window is ignored
    assert asked == 1 + CFG.get_page_window
    assert [type(e) for e in events] == [GetDone]
    assert node.counters["drop_bad_holder"] == 1


def test_a_claimed_total_beyond_the_address_cap_is_not_believed() -> None:
    node = _node()
    asked, events = _serve(node, lambda msg, i: _values(msg, msg.offset, 1 << 30, _fresh(msg.offset)))
    assert asked == CFG.max_values_per_address  # one value per page: the cap, not 2^30 pages
    assert len(events[0].values) == CFG.max_values_per_address


def test_a_holder_serving_an_invalid_value_is_dropped_and_demoted() -> None:
    cfg = SwarmConfig(rate_limit_per_s=0.0, contact_max_failures=1)  # one failure evicts: demotion is visible
    node = _node(cfg, validator=lambda address, value: not value.startswith(b"bad"))
    bad = tuple(b"bad %d" % j for j in range(40))
    asked, events = _serve(node, lambda msg, i: _values(msg, msg.offset, 1 << 30, bad))
    assert asked == 1
    assert node.counters["drop_invalid_value"] == 1  # checking stops at the first invalid value
    assert node.counters["drop_bad_holder"] == 1
    assert node.table.find(int.from_bytes(PEER.node_id, "big")) is None
    assert events[0].values == ()


def test_a_get_ends_at_its_deadline_and_sends_nothing_more() -> None:
    node = _node()
    # A slow holder: every page 0.2 s later, one fresh value each, a total it never reaches.
    asked, events = _serve(node, lambda msg, i: _values(msg, msg.offset, 200, _fresh(i)), step_s=0.2)
    done = [e for e in events if type(e) is GetDone]
    assert len(done) == 1
    assert abs(done[0].elapsed_s - CFG.op_deadline_s) < 0.25
    assert 0 < len(done[0].values) < 200
    assert node.counters["ops_expired"] == 1
    node.messages_to_send()
    for t in range(6, 60):  # the page in flight at the deadline is neither retried nor followed up
        node.handle_timer(float(t))
        assert node.messages_to_send() == []


def test_a_put_ends_at_its_deadline_and_sends_nothing_more() -> None:
    cfg = SwarmConfig(rate_limit_per_s=0.0, op_deadline_s=1.0, rpc_timeout_floor_s=0.3, rpc_timeout_cap_s=1.0)
    node = _node(cfg)
    node.start_put(ADDRESS, b"v", 0.0)
    sent: list[Any] = []
    now = 0.0
    while now < 10.0:
        for msg, addr in node.messages_to_send():
            sent.append((now, msg))
            if type(msg) is wire.FindNode:  # answered at once; STOREs never are
                node.receive_message(wire.Nodes(msg.tid, PEER.node_id, None, None, b"t" * 8, ()), addr, now)
        now += 0.05
        node.handle_timer(now)
    done = [e for e in _events(node) if type(e) is PutDone]
    assert len(done) == 1 and done[0].replicas == 0
    assert abs(done[0].elapsed_s - cfg.op_deadline_s) < 0.1
    assert sent and max(t for t, _ in sent) <= cfg.op_deadline_s


# ---- issue 18 point 14: message loss ---------------------------------------------------------------------
def test_a_put_sends_a_lost_store_once_more() -> None:
    """The STORE and its retry are lost; the put sends it again and the holder's answer counts."""
    cfg = SwarmConfig(rate_limit_per_s=0.0, rpc_timeout_floor_s=0.1, rpc_timeout_cap_s=0.2)
    node = _node(cfg)
    node.start_put(ADDRESS, b"v", 0.0)
    stores = 0
    now = 0.0
    while now < 3.0:
        for msg, addr in node.messages_to_send():
            if type(msg) is wire.FindNode:
                node.receive_message(wire.Nodes(msg.tid, PEER.node_id, None, None, b"t" * 8, ()), addr, now)
            elif type(msg) is wire.Store:
                stores += 1
                if stores > 2:  # the first transmission and its retry are lost
                    node.receive_message(wire.Stored(msg.tid, PEER.node_id, None, None, 1), addr, now)
        now += 0.01
        node.handle_timer(now)
    done = [e for e in _events(node) if type(e) is PutDone]
    assert stores == 3
    assert len(done) == 1 and done[0].replicas == 1


def test_a_put_lookup_asks_a_silent_node_once_more_before_giving_up_on_it() -> None:
    """The FIND_NODE and its retry are lost: before, the node got no STORE (no token); now it is asked
    again, answers, and holds the value."""
    cfg = SwarmConfig(rate_limit_per_s=0.0, rpc_timeout_floor_s=0.1, rpc_timeout_cap_s=0.2)
    node = _node(cfg)
    node.start_put(ADDRESS, b"v", 0.0)
    finds = 0
    now = 0.0
    while now < 3.0:
        for msg, addr in node.messages_to_send():
            if type(msg) is wire.FindNode:
                finds += 1
                if finds > 2:
                    node.receive_message(wire.Nodes(msg.tid, PEER.node_id, None, None, b"t" * 8, ()), addr, now)
            elif type(msg) is wire.Store:
                node.receive_message(wire.Stored(msg.tid, PEER.node_id, None, None, 1), addr, now)
        now += 0.01
        node.handle_timer(now)
    done = [e for e in _events(node) if type(e) is PutDone]
    assert finds == 3
    assert len(done) == 1 and done[0].replicas == 1
