"""RPC layer of a SwarmNode: requests in flight and their timers, answering requests, accepting replies
(Kademlia §2.3).

How it works (``Rpc`` owns the requests in flight; proofs, challenges, address validation and STORE
tokens are validation.py's, eviction guards and rejoin seeds isolation.py's, windows pacing.py's,
RTT estimates rtt.py's):
- ``request``: a 32-bit transaction id and, unless the recipient's (address, id) binding is already
  proven, a fresh nonce; the ``Pending`` record waits in ``pending`` with a deadline from the peer's RTT
  estimate. A peer that pushed back (BUSY, or a retry) has a window of requests in flight: those beyond
  it wait in its queue and go out as answers and timeouts free room (``_release``); one still queued
  after the peer's timeout stalls its op, or fails if the peer fell silent (``_held_expired``). ``fire_timers``: a
  request past its deadline is re-sent ``rpc_retries`` times with a doubled timeout (its op hears
  ``on_stall`` at the first), then reported failed to its op and, when ``Isolation.may_evict`` allows
  and the peer did not answer BUSY lately, to the routing table.
- ``handle_request``: answer PING / FIND_NODE / FIND_VALUE / STORE to the source address only, with a
  proof when the request carried a nonce. A LEAVE removes the sender only when its (address, id)
  matches our table and it is signed by the key of that id for us (``wire.leave_message``); an unsigned
  one (the first wire version) only starts the ping-before-evict check of that contact, and a badly
  signed one changes nothing: a forged source address alone can never empty the table. The requester
  is placed in the routing table: known at the same address -> moved to the tail; proven earlier
  -> added; else, when its bucket has room, the reply carries a challenge its PROOF answers. A
  FIND_NODE / FIND_VALUE from a source not validated gets a PONG with a challenge and is held until
  the PROOF (QUIC's anti-amplification rule); that PONG keeps our request pending (``validations``).
- ``handle_reply``: match the tid and source, check the expected id and the proof, take an RTT sample,
  add the proven contact, answer a challenge with a PROOF, hand the reply to the op. A BUSY marks the
  request (not held against the peer) and shrinks the peer's window.
- A full bucket asks to check its least recently seen contact: ``ping_before_evict`` PINGs it (one at a
  time per address); an answer keeps it, silence evicts it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any

from . import wire
from .config import SwarmConfig
from .identity import NodeIdentity
from .isolation import Isolation, ProvePing
from .lookup import Candidate
from .pacing import Held, Pacing
from .requester import Address, MakeRequest, Op, Pending, Requester
from .routing import Contact, RoutingTable
from .rtt import RttEstimator
from .store import ValueStore
from .validation import Validation

MAX_VALIDATIONS = 3  # PONGs asking for a PROOF that one request may get (each a lost PROOF or a retry)
_VALIDATED_REQUESTS = (wire.FindNode, wire.FindValue)
_ADDR = attrgetter("addr")
_IP = itemgetter(0)


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


class Rpc:
    def __init__(self, identity: NodeIdentity, config: SwarmConfig, rng: random.Random, table: RoutingTable,
                 store: ValueStore, counters: dict[str, int], send: Callable[[Any, Address], None],
                 valid: Callable[[bytes, bytes], bool], requester: Requester,
                 on_proven: Callable[[Address], None] | None = None) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.config = config
        self.rng = rng
        self.table = table
        self.store = store
        self.counters = counters
        self.send = send
        self.valid = valid
        self.requester = requester  # what ops are handed in their callbacks (the node)
        self.contact_intern: dict[bytes, Contact] | None = None  # the simulator shares Contact objects
        self.pending: dict[int, Pending] = {}
        self.proving: set[Address] = set()  # addresses with a ping-before-evict in flight
        self._timers: list[tuple[float, int]] = []
        self._held_timers: list[tuple[float, int, Held]] = []  # (deadline, seq, request) of queued requests
        self._held_seq = 0
        self._inflight_addr: dict[Address, int] = {}
        self.rtt = RttEstimator(config)
        self.validation = Validation(identity, config, rng, table, counters, on_proven)
        self.isolation = Isolation(config, counters)
        self.pacing = Pacing(counters)
        self._evict_op = ProvePing(self.isolation, table, self.proving)

    # ---- requests --------------------------------------------------------------------------------
    def new_tid(self) -> int:
        tid = self.rng.getrandbits(32)
        while tid in self.pending:
            tid = self.rng.getrandbits(32)
        return tid

    def request(self, make: MakeRequest, addr: Address, expected_id: bytes | None, now_s: float, op: Op, *,
                cand: Candidate | None = None, target: int | None = None, page_offset: int = 0,
                counts_replica: bool = False, released: bool = False) -> None:
        pacing = self.pacing
        if (not released and addr in pacing.windows
                and not pacing.room(addr, self._inflight_addr.get(addr, 0))):
            # the peer pushed back: wait for room in its window (_release sends it), but no longer than a
            # sent request would wait for its answer (_held_expired)
            h = Held(make, addr, expected_id, op, cand, target, page_offset, counts_replica, now_s)
            pacing.hold(addr, h)
            self._held_seq += 1
            heapq.heappush(self._held_timers, (now_s + self.rtt.timeout_for(expected_id), self._held_seq, h))
            return
        tid = self.new_tid()
        nonce = None
        if expected_id is None or not self.validation.proven(expected_id, addr):
            nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        msg = make(tid, nonce)
        p = Pending(tid, msg, addr, expected_id, nonce, op, now_s, self.rtt.timeout_for(expected_id), cand, target,
                    page_offset, counts_replica)
        self.pending[tid] = p
        self.isolation.sent(now_s)
        self._inflight_addr[addr] = self._inflight_addr.get(addr, 0) + 1
        heapq.heappush(self._timers, (p.deadline_s, tid))
        op.messages += 1
        self.send(msg, addr)

    def _release(self, addr: Address, now_s: float) -> None:
        """Send the requests queued for ``addr`` that its window now has room for (not those of finished ops)."""
        pacing = self.pacing
        while addr in pacing.queues:
            item = pacing.release(addr, self._inflight_addr.get(addr, 0))
            if item is None:
                return
            if item.cancelled:
                continue
            item.cancelled = True  # sent now: its hold timer is void
            if not getattr(item.op, "done", False):
                self.request(item.make, addr, item.expected_id, now_s, item.op, cand=item.cand, target=item.target,
                             page_offset=item.page_offset, counts_replica=item.counts_replica, released=True)

    def inflight_to(self, addr: Address) -> bool:
        return addr in self._inflight_addr

    def next_deadline(self) -> float | None:
        """The earliest live request deadline (stale heap entries are dropped here)."""
        held = self._held_timers
        while held and (held[0][2].cancelled or getattr(held[0][2].op, "done", False)):
            heapq.heappop(held)
        first = held[0][0] if held else None
        timers = self._timers
        while timers:
            deadline, tid = timers[0]
            p = self.pending.get(tid)
            if p is not None and p.deadline_s == deadline:
                return deadline if first is None else min(deadline, first)
            heapq.heappop(timers)
        return first

    def fire_timers(self, now_s: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            deadline, tid = heapq.heappop(timers)
            p = self.pending.get(tid)  # not cached: _forget replaces an emptied dict
            if p is None or p.deadline_s != deadline:
                continue
            self._expired(p, now_s)
        held = self._held_timers
        while held and held[0][0] <= now_s:
            h = heapq.heappop(held)[2]
            if not h.cancelled and not getattr(h.op, "done", False):
                self._held_expired(h, now_s)

    def _held_expired(self, h: Held, now_s: float) -> None:
        """A request still queued after the peer's timeout: its op moves on (``on_stall``); when the peer
        answered nothing since it was queued and is not shedding load, the request fails as a sent one
        would (against its contact only when ``Isolation.may_evict`` allows): a dead peer behind its
        window must not hold every lookup that meets it until the op's deadline."""
        p = Pending(0, None, h.addr, h.expected_id, None, h.op, h.held_s, now_s - h.held_s, h.cand, h.target,
                    h.page_offset, h.counts_replica)
        on_stall = getattr(h.op, "on_stall", None)
        if on_stall is not None:
            on_stall(self.requester, p, now_s)
        iso = self.isolation
        if (h.cancelled or getattr(h.op, "done", False) or iso.shedding(p, now_s)
                or not self.pacing.silent_since(h.addr, h.held_s)):
            return  # still queued: it goes out when the window has room
        h.cancelled = True
        self.counters["held_failed"] += 1
        if (h.expected_id is not None and h.op is not self._evict_op
                and iso.may_evict(p, now_s, len(self.table))
                and self.table.record_failure(int.from_bytes(h.expected_id, "big"))):
            iso.lost_contact(h.addr)
        h.op.on_timeout(self.requester, p, now_s)

    def _expired(self, p: Pending, now_s: float) -> None:
        cfg = self.config
        if getattr(p.op, "done", False):  # its operation finished (deadline, quorum): nothing more is sent
            self._forget(p)
            self._release(p.addr, now_s)
            return
        if p.attempts <= cfg.rpc_retries:
            if p.attempts == 1:  # a loss: the peer's window shrinks
                self.pacing.congested(p.addr, p.sent_s, self._inflight_addr[p.addr], now_s, False)
            p.attempts += 1
            p.timeout_s = min(cfg.rpc_timeout_cap_s, p.timeout_s * 2)
            p.deadline_s = now_s + p.timeout_s
            heapq.heappush(self._timers, (p.deadline_s, p.tid))
            window = self.pacing.windows.get(p.addr)
            if window is not None and self._inflight_addr[p.addr] > window[0]:
                self.counters["retries_held"] += 1  # the peer sheds load: no second copy, only the wait
            else:
                self.counters["retries"] += 1
                p.op.messages += 1
                if p.proof_msg is not None:
                    self.send(p.proof_msg, p.addr)  # the PROOF the peer waits for may be what was lost
                self.send(p.msg, p.addr)
            if p.attempts == 2:
                on_stall = getattr(p.op, "on_stall", None)
                if on_stall is not None:
                    on_stall(self.requester, p, now_s)
            return
        self._forget(p)
        self._release(p.addr, now_s)
        self.counters["timeouts"] += 1
        iso = self.isolation
        if (p.expected_id is not None and p.op is not self._evict_op and not iso.shedding(p, now_s)
                and iso.may_evict(p, now_s, len(self.table))):
            if self.table.record_failure(int.from_bytes(p.expected_id, "big")):
                iso.lost_contact(p.addr)
        p.op.on_timeout(self.requester, p, now_s)

    def _forget(self, p: Pending) -> None:
        del self.pending[p.tid]
        n = self._inflight_addr[p.addr] - 1
        if n:
            self._inflight_addr[p.addr] = n
        else:
            del self._inflight_addr[p.addr]
        # A dict never shrinks: once a burst (a join's ~100 refresh PINGs) is answered, drop the tables it
        # grew (measured: 7.6 KB per simulated node, most of the joined swarm's memory after the tables).
        if not self.pending:
            self.pending = {}
            self._inflight_addr = {}

    # ---- contacts and proofs -----------------------------------------------------------------------
    def _contact(self, node_id: bytes, addr: Address) -> Contact:
        intern = self.contact_intern
        if intern is not None:
            c = intern.get(node_id)
            if c is not None and c.addr == addr:
                return c
        return Contact(node_id, addr)

    def _seen_proven(self, contact: Contact, now_s: float) -> None:
        to_ping = self.table.add_proven(contact, now_s)
        if to_ping is not None:
            self.ping_before_evict(to_ping, now_s)

    def ping_before_evict(self, contact: Contact, now_s: float) -> None:
        """PING a table contact once at a time: an answer moves it to its bucket's tail, silence evicts it
        (and promotes a replacement)."""
        if contact.addr not in self.proving:
            self.proving.add(contact.addr)
            node_id = self.node_id
            self.request(lambda tid, nonce: wire.Ping(tid, node_id, nonce), contact.addr, contact.node_id, now_s,
                         self._evict_op)

    def rotate_tokens(self, now_s: float) -> None:
        self.validation.rotate(now_s)

    # ---- receiving -------------------------------------------------------------------------------
    def handle_request(self, msg: Any, addr: Address, now_s: float) -> None:
        t = type(msg)
        cfg = self.config
        sender_int = int.from_bytes(msg.sender_id, "big")
        if t is wire.Proof:
            self._accept_proof(msg, addr, now_s)
            return
        if t is wire.Leave:
            self._leave(msg, sender_int, addr, now_s)
            return
        challenge = self._place_requester(msg.sender_id, sender_int, addr, now_s)
        val = self.validation
        proof = val.proof(msg.nonce)
        budget = cfg.max_datagram - wire.REPLY_OVERHEAD - len(addr[0])
        node_id = self.node_id
        if ((t is wire.FindNode or t is wire.FindValue) and not val.validated(addr)
                and not val.proven(msg.sender_id, addr)):
            # Address validation (QUIC, RFC 9000 8.1): a NODES/VALUES answer is up to 12x its request, so a
            # source that has not shown it receives at its address gets only a PONG (< 3x any request)
            # with a challenge; the request is held, and answered when the PROOF validates the address.
            self.counters["address_checks"] += 1
            self.send(wire.Pong(msg.tid, node_id, proof, val.hold_until_validated(msg, addr, now_s)), addr)
            return
        if t is wire.FindNode:
            target = int.from_bytes(msg.target, "big")
            contacts = _fit_contacts(self.table.closest(target, cfg.k, sender_int), budget)
            self.send(wire.Nodes(msg.tid, node_id, proof, challenge, val.issue_token(addr), contacts), addr)
        elif t is wire.FindValue:
            store = self.store
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
                contacts = _fit_contacts(self.table.closest(target, cfg.k, sender_int), budget)
            self.send(wire.Values(msg.tid, node_id, proof, challenge, val.issue_token(addr), msg.offset, total,
                                  digest, tuple(values), contacts), addr)
        elif t is wire.Ping:
            self.send(wire.Pong(msg.tid, node_id, proof, challenge), addr)
        elif t is wire.Store:
            if not val.token_ok(msg.token, addr):
                self.counters["drop_bad_token"] += 1
                return
            held = 0
            for v in msg.values:
                if self.valid(msg.address, v) and self.requester.store_value(msg.address, v, now_s, addr):
                    held += 1  # a value the storage policy refused is not reported stored
            self.send(wire.Stored(msg.tid, node_id, proof, challenge, held), addr)

    def signed_leave(self, recipient_id: bytes, tid: int) -> wire.Leave:
        ident = self.identity
        return wire.Leave(tid, self.node_id, (ident.public_key, ident.sign(wire.leave_message(recipient_id, tid))))

    def _leave(self, msg: wire.Leave, sender_int: int, addr: Address, now_s: float) -> None:
        c = self.table.find(sender_int)
        if c is None or c.addr != addr:
            return
        if msg.proof is None:  # an old peer's unsigned LEAVE: believe it only if the contact stays silent
            self.counters["leave_unsigned"] += 1
            self.ping_before_evict(c, now_s)
            return
        pk, sig = msg.proof
        if not self.validation.key_proves(pk, msg.sender_id, wire.leave_message(self.node_id, msg.tid), sig):
            self.counters["drop_bad_proof"] += 1
            return
        self.table.remove(sender_int)
        self.counters["contacts_left"] += 1
        self.isolation.left(addr)

    def _place_requester(self, sender_id: bytes, sender_int: int, addr: Address, now_s: float) -> bytes | None:
        """Touch a known requester, add a proven one; else return a challenge when its bucket has room."""
        table = self.table
        if table.touch(sender_int, addr):
            return None
        if self.validation.cached_id(addr) == sender_id:
            self._seen_proven(self._contact(sender_id, addr), now_s)
            return None
        if not table.has_room(sender_int) or self.inflight_to(addr):
            return None  # full bucket: not worth a proof; or our own pending request will prove it
        return self.validation.new_challenge(addr, sender_id, now_s)

    def _accept_proof(self, msg: Any, addr: Address, now_s: float) -> None:
        ok, held = self.validation.accept_proof(msg, addr, now_s)
        if not ok:
            return
        self._seen_proven(self._contact(msg.sender_id, addr), now_s)
        if held is not None:
            self.handle_request(held, addr, now_s)  # the request held until addr was validated

    def handle_reply(self, msg: Any, addr: Address, now_s: float) -> None:
        p = self.pending.get(msg.tid)
        if p is None or p.addr != addr:
            self.counters["drop_unexpected_reply"] += 1
            return
        if p.expected_id is not None and msg.sender_id != p.expected_id:
            self.counters["drop_bad_proof"] += 1
            return  # not the node we asked: let the request time out
        if type(msg) is wire.Busy:
            # Back-pressure: the peer is alive and shedding load. The request keeps its timer (its retry
            # comes after the doubled timeout); if it fails, that is not held against the peer.
            # Its window shrinks, so the requests after this one go out paced (pacing.py).
            p.busy = True
            self.counters["busy_in"] += 1
            self.isolation.busy(addr, now_s)
            self.pacing.congested(addr, p.sent_s, self._inflight_addr[addr], now_s, True)
            return
        val = self.validation
        if p.nonce is not None and not (p.validations and val.cached_id(addr) == msg.sender_id):
            # (an answer after our PROOF is from the id its PONG proved: checked once)
            if not val.reply_proof_ok(p.nonce, msg):
                self.counters["drop_bad_proof"] += 1
                return
            val.remember(addr, msg.sender_id)
        validate = (type(msg) is wire.Pong and msg.challenge is not None and p.validations < MAX_VALIDATIONS
                    and type(p.msg) in _VALIDATED_REQUESTS)
        pacing = self.pacing
        if addr in pacing.windows:
            pacing.answered(addr, now_s)
        if not validate:
            self._forget(p)
            if addr in pacing.queues:
                self._release(addr, now_s)
        self.isolation.answered(now_s)
        if p.attempts == 1 and not p.validations:  # (the answer after our PROOF took two round trips)
            self.rtt.sample(msg.sender_id, now_s - p.sent_s)
        self.table.record_success(int.from_bytes(msg.sender_id, "big"))
        self._seen_proven(self._contact(msg.sender_id, addr), now_s)
        if msg.challenge is not None:
            proof_msg = wire.Proof(0, self.node_id, val.proof(msg.challenge))
            self.send(proof_msg, addr)
            if validate:
                p.proof_msg = proof_msg
        if validate:
            # The peer holds our request until we validate our address: the PROOF above does that, and
            # its answer comes to this same request (still pending, with a fresh deadline).
            p.validations += 1
            p.attempts = 1  # the exchange that follows gets its own retries
            p.deadline_s = now_s + p.timeout_s
            heapq.heappush(self._timers, (p.deadline_s, p.tid))
            self.counters["address_validations"] += 1
            return
        p.op.on_reply(self.requester, p, msg, now_s)
