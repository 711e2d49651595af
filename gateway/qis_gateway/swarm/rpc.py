"""RPC handlers of a SwarmNode: answering requests and accepting replies (Kademlia §2.3, BEP 5 tokens).

How it works:
- ``handle_request``: answer PING / FIND_NODE / FIND_VALUE / STORE to the source address only, with a
  proof when the request carried a nonce; LEAVE removes the sender if its (address, id) matches our
  table. The requester is placed in the routing table: known at the same address -> moved to the tail;
  proven earlier -> added; otherwise, when its bucket has room, the reply carries a challenge and the
  requester's one-way PROOF (checked in ``_accept_proof``) adds it.
- ``handle_reply``: match the transaction id and the source address, check the expected id and the
  proof (SHA-256(public key) == id, signature over our nonce), take an RTT sample, add the proven
  contact, answer a challenge with a PROOF, then hand the reply to the op that sent the request.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .node import Address, SwarmNode


_ADDR = attrgetter("addr")
_IP = itemgetter(0)


def _proof(node: SwarmNode, nonce: bytes | None) -> tuple[bytes, bytes] | None:
    if nonce is None:
        return None
    ident = node.identity
    return (ident.public_key, ident.sign(wire.proof_message(nonce)))


def _fit_contacts(contacts: list[Any], budget: int) -> tuple[Any, ...]:
    if sum(map(len, map(_IP, map(_ADDR, contacts)))) + wire.CONTACT_FIXED_BYTES * len(contacts) <= budget:
        return tuple(contacts)
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
    if t is wire.Proof:
        _accept_proof(node, msg, addr, now_s)
        return
    if t is wire.Leave:
        c = node.table.find(sender_int)
        if c is not None and c.addr == addr:
            node.table.remove(sender_int)
        return
    challenge = _place_requester(node, msg.sender_id, sender_int, addr, now_s)
    proof = _proof(node, msg.nonce)
    budget = cfg.max_datagram - wire.REPLY_OVERHEAD - len(addr[0])
    if t is wire.FindNode:
        target = int.from_bytes(msg.target, "big")
        contacts = _fit_contacts(node.table.closest(target, cfg.k, sender_int), budget)
        node._send(wire.Nodes(msg.tid, node.node_id, proof, challenge, node._token(addr), contacts), addr)
    elif t is wire.FindValue:
        store = node.store
        total = store.count(msg.address)
        values: list[bytes] = []
        contacts: tuple[Any, ...] = ()
        digest = b""
        if total and msg.offset == 0:
            digest = wire.set_digest(store.values(msg.address, cfg.max_values_per_address))
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
        node._send(wire.Values(msg.tid, node.node_id, proof, challenge, node._token(addr), msg.offset, total,
                               digest, tuple(values), contacts), addr)
    elif t is wire.Ping:
        node._send(wire.Pong(msg.tid, node.node_id, proof, challenge), addr)
    elif t is wire.Store:
        if not node._token_ok(msg.token, addr):
            node.counters["drop_bad_token"] += 1
            return
        held = 0
        for v in msg.values:
            if node._valid(msg.address, v) and node._store_value(msg.address, v, now_s, addr):
                held += 1  # a value the storage policy refused is not reported stored
        node._send(wire.Stored(msg.tid, node.node_id, proof, challenge, held), addr)


def _place_requester(node: SwarmNode, sender_id: bytes, sender_int: int, addr: Address,
                     now_s: float) -> bytes | None:
    """Touch a known requester, add a proven one; else return a challenge when its bucket has room."""
    table = node.table
    if table.touch(sender_int, addr):
        return None
    if node._proof_cache.get(addr) == sender_id:
        node._seen_proven(node._contact(sender_id, addr), now_s)
        return None
    if not table.has_room(sender_int) or node._inflight_to(addr):
        return None  # full bucket: not worth a proof; or our own pending request will prove it
    return node._new_challenge(addr, sender_id, now_s)


def _accept_proof(node: SwarmNode, msg: Any, addr: Address, now_s: float) -> None:
    rec = node._challenges.pop(addr, None)
    pk, sig = msg.proof
    if (rec is None or rec[1] != msg.sender_id or now_s > rec[2]
            or hashlib.sha256(pk).digest() != msg.sender_id
            or not node.identity.verify(pk, wire.proof_message(rec[0]), sig)):
        node.counters["drop_bad_proof"] += 1
        return
    node._remember_proof(addr, msg.sender_id)
    node._seen_proven(node._contact(msg.sender_id, addr), now_s)


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
    node._forget(p)
    if p.attempts == 1:
        node._rtt_sample(msg.sender_id, now_s - p.sent_s)
    node.table.record_success(int.from_bytes(msg.sender_id, "big"))
    node._seen_proven(node._contact(msg.sender_id, addr), now_s)
    if msg.challenge is not None:
        node._send(wire.Proof(0, node.node_id, _proof(node, msg.challenge)), addr)
    p.op.on_reply(node, p, msg, now_s)
