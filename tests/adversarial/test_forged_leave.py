"""Issue 18 point 3: a LEAVE from a forged source address must change nothing. Before the fix, 7 unsigned
LEAVE datagrams whose source addresses copied 7 peers' took a node's routing table from 7 contacts to 0.
Now a LEAVE is signed by the leaving node's key for its recipient; an unsigned one (the first wire
version) only makes the recipient PING that contact, which evicts it only if it stays silent."""

from __future__ import annotations

from qis_gateway.swarm.core import wire
from qis_gateway.swarm.core.events import LeaveDone
from qis_gateway.swarm.core.identity import NodeIdentity
from swarm.conftest import MemNet


def _swarm() -> tuple[MemNet, list]:
    net = MemNet(seed=18)
    nodes = net.build(8)
    net.run(until=net.now + 30.0)
    victim = nodes[0]
    assert len(victim.table) == 7
    return net, nodes


def test_forged_leaves_leave_the_table_intact() -> None:
    net, nodes = _swarm()
    victim = nodes[0]
    attacker = NodeIdentity.generate(b"\x66" * 32)
    for c in list(victim.table.contacts()):
        unsigned = wire.encode(wire.Leave(1, c.node_id))
        # signed, but by a key that is not the contact's (the key's hash is not its id)
        forged = wire.encode(wire.Leave(2, c.node_id, (attacker.public_key,
                                                       attacker.sign(wire.leave_message(victim.node_id, 2)))))
        victim.receive_datagram(unsigned, c.addr, net.now)
        victim.receive_datagram(forged, c.addr, net.now)
    net.run(until=net.now + 60.0)  # the PING checks the unsigned ones started are answered
    assert len(victim.table) == 7
    assert victim.counters["leave_unsigned"] == 7 and victim.counters["contacts_left"] == 0
    assert victim.counters["drop_bad_proof"] >= 7


def test_a_signed_leave_is_replay_proof_and_removes_at_once() -> None:
    net, nodes = _swarm()
    victim, leaver, other = nodes[0], nodes[1], nodes[2]
    # a LEAVE the leaver signed for another node is no proof here
    replay = wire.encode(leaver.rpc.signed_leave(other.node_id, 7))
    victim.receive_datagram(replay, leaver.test_addr, net.now)
    assert victim.table.find(int.from_bytes(leaver.node_id, "big")) is not None
    leaver.leave(net.now)
    net.wait_for(LeaveDone)
    net.dead.add(leaver.test_addr)
    net.run(until=net.now + 1.0)
    assert victim.table.find(int.from_bytes(leaver.node_id, "big")) is None
    assert victim.counters["contacts_left"] == 1


def test_an_old_peers_unsigned_leave_still_works_when_it_is_gone() -> None:
    net, nodes = _swarm()
    victim, gone = nodes[0], nodes[1]
    net.dead.add(gone.test_addr)
    victim.receive_datagram(wire.encode(wire.Leave(3, gone.node_id)), gone.test_addr, net.now)
    victim.start_get(b"\x01" * 32, 10, net.now)  # others answer meanwhile: the silence is the peer's fault
    net.run(until=net.now + 60.0)
    assert victim.table.find(int.from_bytes(gone.node_id, "big")) is None
    assert len(victim.table) == 6
