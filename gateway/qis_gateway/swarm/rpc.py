"""RPC handlers of a SwarmNode: answering requests and accepting replies (Kademlia §2.3, BEP 5 tokens).

How it works:
- ``handle_request``: answer PING / FIND_NODE / FIND_VALUE / STORE to the source address only, with a
  proof when the request carried a nonce; LEAVE removes the sender if its (address, id) matches our
  table. Afterwards the requester is considered for the routing table: known and at the same address ->
  moved to the tail; proven earlier -> added; otherwise PINGed with a nonce when its bucket has room.
- ``handle_reply``: match the transaction id and the source address, check the expected id and the
  proof (SHA-256(public key) == id, signature over our nonce), take an RTT sample, add the proven
  contact, then hand the reply to the op that sent the request.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .node import Address, SwarmNode


def _proof(node: SwarmNode, nonce: bytes | None) -> tuple[bytes, bytes] | None:
    if nonce is None:
        return None
    ident = node.identity
    return (ident.public_key, ident.sign(wire.proof_message(nonce)))


def _fit_contacts(contacts: list[Any], budget: int) -> tuple[Any, ...]:
    out = []
    for c in contacts:
        size = wire.contact_size(c)
        if size > budget:
            break
        budget -= size
        out.append(c)
    return tuple(out)


def handle_request(node: SwarmNode, msg: Any, addr: Address, now_s: float) -> None:
    t = type(msg)
    cfg = node.config
    sender_int = int.from_bytes(msg.sender_id, "big")
    budget = cfg.max_datagram - wire.REPLY_OVERHEAD - len(addr[0])
    if t is wire.FindNode:
        target = int.from_bytes(msg.target, "big")
        contacts = _fit_contacts(node.table.closest(target, cfg.k, sender_int), budget)
        node._send(wire.Nodes(msg.tid, node.node_id, _proof(node, msg.nonce), node._token(addr), contacts), addr)
    elif t is wire.FindValue:
        store = node.store
        total = store.count(msg.address)
        values: list[bytes] = []
        contacts: tuple[Any, ...] = ()
        if total and msg.offset < total:
            for v in store.values(msg.address, 64, msg.offset):
                size = wire.value_size(v)
                if size > budget:
                    break
                budget -= size
                values.append(v)
        if not values:
            target = int.from_bytes(msg.address, "big")
            contacts = _fit_contacts(node.table.closest(target, cfg.k, sender_int), budget)
        node._send(wire.Values(msg.tid, node.node_id, _proof(node, msg.nonce), node._token(addr), msg.offset,
                               total, tuple(values), contacts), addr)
    elif t is wire.Ping:
        node._send(wire.Pong(msg.tid, node.node_id, _proof(node, msg.nonce)), addr)
    elif t is wire.Store:
        if not node._token_ok(msg.token, addr):
            node.counters["drop_bad_token"] += 1
            return
        held = 0
        for v in msg.values:
            if node._valid(msg.address, v):
                node._store_value(msg.address, v, now_s)
                held += 1
        node._send(wire.Stored(msg.tid, node.node_id, _proof(node, msg.nonce), held), addr)
    elif t is wire.Leave:
        c = node.table.find(sender_int)
        if c is not None and c.addr == addr:
            node.table.remove(sender_int)
        return
    _consider_requester(node, msg.sender_id, sender_int, addr, now_s)


def _consider_requester(node: SwarmNode, sender_id: bytes, sender_int: int, addr: Address, now_s: float) -> None:
    table = node.table
    c = table.find(sender_int)
    if c is not None and c.addr == addr:
        table.add_proven(c, now_s)
        return
    if node._proof_cache.get(addr) == sender_id:
        node._seen_proven(node._contact(sender_id, addr), now_s)
        return
    if table.has_room(sender_int) and addr not in node._proving:
        from .node import _PROVE

        node._proving.add(addr)
        node._request(lambda tid, nonce: wire.Ping(tid, node.node_id, nonce), addr, sender_id, now_s, _PROVE, None)


def handle_reply(node: SwarmNode, msg: Any, addr: Address, now_s: float) -> None:
    pending = node._pending
    p = pending.get(msg.tid)
    if p is None or p.addr != addr:
        node.counters["drop_unexpected_reply"] += 1
        return
    if p.expected_id is not None and msg.sender_id != p.expected_id:
        node.counters["drop_bad_proof"] += 1
        return  # not the node we asked: let the request time out
    if p.nonce is not None:
        proof = msg.proof
        if (proof is None or hashlib.sha256(proof[0]).digest() != msg.sender_id
                or not node.identity.verify(proof[0], wire.proof_message(p.nonce), proof[1])):
            node.counters["drop_bad_proof"] += 1
            return
        node._remember_proof(addr, msg.sender_id)
    del pending[msg.tid]
    if p.attempts == 1:
        node._rtt_sample(msg.sender_id, now_s - p.sent_s)
    node.table.record_success(int.from_bytes(msg.sender_id, "big"))
    node._seen_proven(node._contact(msg.sender_id, addr), now_s)
    p.op.on_reply(node, p, msg, now_s)
