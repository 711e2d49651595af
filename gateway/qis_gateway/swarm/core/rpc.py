"""RPC layer of a SwarmNode: requests in flight and their timers, answering requests, accepting replies,
proofs of identity and STORE tokens (Kademlia §2.3, BEP 5 tokens).

How it works (``Rpc`` owns every piece of state named here):
- ``request``: a 32-bit transaction id and, unless the recipient's (address, id) binding is already
  proven (routing table or the bounded proof cache), a fresh nonce; the ``Pending`` record waits in
  ``pending`` with a deadline from the peer's RTT estimate: clamp(max(mult * srtt, srtt + 4 * rttvar),
  floor, cap), unknown peers use the node-wide estimate. ``fire_timers``: a request past its deadline is
  re-sent ``rpc_retries`` times with a doubled timeout (its op hears ``on_stall`` at the first), then
  reported failed to its op and to the routing table.
- ``handle_request``: answer PING / FIND_NODE / FIND_VALUE / STORE to the source address only, with a
  proof when the request carried a nonce. A LEAVE removes the sender only when its (address, id)
  matches our table and it is signed by the key of that id for us (``wire.leave_message``); an unsigned
  one (the first wire version) only starts the ping-before-evict check of that contact, and a badly
  signed one changes nothing: a forged source address alone can never empty the table. The requester
  is placed in the routing table: known at the same address -> moved to the tail; proven earlier
  -> added; otherwise, when its bucket has room, the reply carries a challenge and the requester's
  one-way PROOF (checked in ``_accept_proof``) adds it.
- ``handle_reply``: match the transaction id and the source address, check the expected id and the
  proof (SHA-256(public key) == id, signature over our nonce), take an RTT sample, add the proven
  contact, answer a challenge with a PROOF, then hand the reply to the op that sent the request.
- Address validation (QUIC's anti-amplification rule): a FIND_NODE / FIND_VALUE from a source that is
  not validated (in the table at that address, in the proof cache, or its IP in ``ValidatedAddresses``)
  gets a PONG with a challenge, and the request is held with the challenge until the PROOF answers it.
  On the requester's side such a PONG keeps the request pending (``Pending.validations``): the PROOF goes
  out, and again with a retry.
- Isolation: a request that failed after its retries counts against its contact only when ``may_evict``
  (the table holds more than ``contact_floor`` and another peer answered since it was sent); evicted
  contacts' addresses are kept in ``lost`` (32) as rejoin seeds for housekeeping.
- A full bucket asks to check its least recently seen contact: ``ping_before_evict`` PINGs it (one at a
  time per address); an answer keeps it, silence evicts it.
- STORE tokens (``policy.Tokens``) are issued in NODES/VALUES and checked on STORE; housekeeping rotates
  the secret through ``rotate_tokens``.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any

from . import policy, wire
from .config import SwarmConfig
from .identity import NodeIdentity
from .lookup import Candidate
from .requester import Address, MakeRequest, Op, Pending, Requester
from .routing import Contact, RoutingTable
from .store import ValueStore

CHALLENGE_LIFETIME_S = 30.0
MAX_VALIDATIONS = 3  # PONGs asking for a PROOF that one request may get (each a lost PROOF or a retry)
_VALIDATED_REQUESTS = (wire.FindNode, wire.FindValue)
LOST_CONTACTS_KEPT = 32
BUSY_HOLD_S = 5.0  # after a BUSY, failed requests to that peer are back-pressure, not death
BUSY_PEERS_KEPT = 256
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


class _ProvePing:
    """The op of PINGs that check a contact before evicting it."""

    __slots__ = ("rpc", "messages")

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self.messages = 0

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        self.rpc.proving.discard(p.addr)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        rpc = self.rpc
        rpc.proving.discard(p.addr)
        if (p.expected_id is not None and not rpc.shedding(p, now_s) and rpc.may_evict(p, now_s)
                and rpc.table.remove(int.from_bytes(p.expected_id, "big"))):
            rpc.lost_contact(p.addr)


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
        self.on_proven = on_proven  # the rate limiter gives a proven source its own bucket
        self.contact_intern: dict[bytes, Contact] | None = None  # the simulator shares Contact objects
        self.pending: dict[int, Pending] = {}
        self.proving: set[Address] = set()  # addresses with a ping-before-evict in flight
        self._timers: list[tuple[float, int]] = []
        self._inflight_addr: dict[Address, int] = {}
        # addr -> (nonce, requester id, expiry, the request held until the PROOF validates addr, or None)
        self._challenges: dict[Address, tuple[bytes, bytes, float, Any]] = {}
        self._proof_cache: dict[Address, bytes] = {}
        self._rtt: dict[bytes, tuple[float, float]] = {}
        self._srtt = config.rpc_timeout_initial_s / max(config.rpc_rtt_multiplier, 1.0)
        self._tokens = policy.Tokens(rng, config.token_lifetime_s)
        self._validated = policy.ValidatedAddresses(rng, config.address_validation_bits)
        self._evict_op = _ProvePing(self)
        self.last_reply_s = -1.0e18  # when a peer last answered one of our requests
        self._unanswered_since_s: float | None = None  # first request sent after that answer
        self._busy_until: dict[Address, float] = {}  # peers that answered BUSY lately
        self.lost: dict[Address, None] = {}  # addresses of contacts removed lately (seeds for a rejoin)

    # ---- requests --------------------------------------------------------------------------------
    def new_tid(self) -> int:
        tid = self.rng.getrandbits(32)
        while tid in self.pending:
            tid = self.rng.getrandbits(32)
        return tid

    def request(self, make: MakeRequest, addr: Address, expected_id: bytes | None, now_s: float, op: Op, *,
                cand: Candidate | None = None, target: int | None = None, page_offset: int = 0,
                counts_replica: bool = False) -> None:
        tid = self.new_tid()
        nonce = None
        if expected_id is None or not self._proven(expected_id, addr):
            nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        msg = make(tid, nonce)
        p = Pending(tid, msg, addr, expected_id, nonce, op, now_s, self.timeout_for(expected_id), cand, target,
                    page_offset, counts_replica)
        self.pending[tid] = p
        if self._unanswered_since_s is None:
            self._unanswered_since_s = now_s
        self._inflight_addr[addr] = self._inflight_addr.get(addr, 0) + 1
        heapq.heappush(self._timers, (p.deadline_s, tid))
        op.messages += 1
        self.send(msg, addr)

    def inflight_to(self, addr: Address) -> bool:
        return addr in self._inflight_addr

    def next_deadline(self) -> float | None:
        """The earliest live request deadline (stale heap entries are dropped here)."""
        timers = self._timers
        while timers:
            deadline, tid = timers[0]
            p = self.pending.get(tid)
            if p is not None and p.deadline_s == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def fire_timers(self, now_s: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            deadline, tid = heapq.heappop(timers)
            p = self.pending.get(tid)  # not cached: _forget replaces an emptied dict
            if p is None or p.deadline_s != deadline:
                continue
            self._expired(p, now_s)

    def _expired(self, p: Pending, now_s: float) -> None:
        cfg = self.config
        if getattr(p.op, "done", False):  # its operation finished (deadline, quorum): nothing more is sent
            self._forget(p)
            return
        if p.attempts <= cfg.rpc_retries:
            p.attempts += 1
            p.timeout_s = min(cfg.rpc_timeout_cap_s, p.timeout_s * 2)
            p.deadline_s = now_s + p.timeout_s
            heapq.heappush(self._timers, (p.deadline_s, p.tid))
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
        self.counters["timeouts"] += 1
        if (p.expected_id is not None and p.op is not self._evict_op and not self.shedding(p, now_s)
                and self.may_evict(p, now_s)):
            if self.table.record_failure(int.from_bytes(p.expected_id, "big")):
                self.lost_contact(p.addr)
        p.op.on_timeout(self.requester, p, now_s)

    def shedding(self, p: Pending, now_s: float) -> bool:
        """The peer told us it is shedding load (BUSY) within the last ``BUSY_HOLD_S``: its silence is
        back-pressure, not death (the limiter answers at most one refused datagram per interval)."""
        return p.busy or now_s <= self._busy_until.get(p.addr, -1.0)

    def may_evict(self, p: Pending, now_s: float) -> bool:
        """A timed-out request may count against its contact: the table holds more than the floor and
        another peer answered us after it was sent. Otherwise every request is timing out, and the fault
        is most likely our own (a burst, a dead link): evicting would isolate us. After
        ``isolation_grace_s`` of asking without any answer the contacts are most likely gone (a lone
        peer died):
        then they are evicted as before, and the rejoin looks for them."""
        cfg = self.config
        silent = self._unanswered_since_s
        if ((len(self.table) > cfg.contact_floor and self.last_reply_s > p.sent_s)
                or (silent is not None and now_s - silent >= cfg.isolation_grace_s)):
            return True
        self.counters["evictions_withheld"] += 1
        return False

    def lost_contact(self, addr: Address) -> None:
        self.counters["contacts_evicted"] += 1
        lost = self.lost
        lost.pop(addr, None)
        lost[addr] = None
        if len(lost) > LOST_CONTACTS_KEPT:
            del lost[next(iter(lost))]

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

    def timeout_for(self, node_id: bytes | None) -> float:
        """The timeout a request to ``node_id`` gets now (from its RTT estimate)."""
        cfg = self.config
        est = self._rtt.get(node_id) if node_id is not None else None
        if est is None:
            t = cfg.rpc_rtt_multiplier * self._srtt
        else:
            t = max(cfg.rpc_rtt_multiplier * est[0], est[0] + 4 * est[1])
        return min(cfg.rpc_timeout_cap_s, max(cfg.rpc_timeout_floor_s, t))

    def rtt_sample(self, node_id: bytes, sample: float) -> None:
        est = self._rtt.get(node_id)
        if est is None:
            self._rtt[node_id] = (sample, sample / 2)
            if len(self._rtt) > self.config.rtt_cache_size:
                del self._rtt[next(iter(self._rtt))]
        else:
            srtt, var = est
            self._rtt[node_id] = (0.875 * srtt + 0.125 * sample, 0.75 * var + 0.25 * abs(srtt - sample))
        self._srtt = 0.875 * self._srtt + 0.125 * sample

    # ---- contacts and proofs -----------------------------------------------------------------------
    def _proven(self, node_id: bytes, addr: Address) -> bool:
        c = self.table.find(int.from_bytes(node_id, "big"))
        if c is not None and c.addr == addr:
            return True
        return self._proof_cache.get(addr) == node_id

    def _proof(self, nonce: bytes | None) -> tuple[bytes, bytes] | None:
        if nonce is None:
            return None
        ident = self.identity
        return (ident.public_key, ident.sign(wire.proof_message(nonce)))

    def _new_challenge(self, addr: Address, node_id: bytes, now_s: float) -> bytes | None:
        old = self._challenges.get(addr)
        if old is not None and old[1] == node_id and now_s <= old[2]:
            return None  # one outstanding challenge per address
        nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        self._challenges[addr] = (nonce, node_id, now_s + CHALLENGE_LIFETIME_S, None)
        if len(self._challenges) > self.config.challenge_cache_size:
            del self._challenges[next(iter(self._challenges))]
        return nonce

    def _hold_until_validated(self, msg: Any, addr: Address, now_s: float) -> bytes:
        """Keep ``msg`` with the challenge outstanding for its (addr, id), or a new one; the PROOF of that
        challenge validates addr and gets ``msg`` answered (``_accept_proof``). Returns the challenge."""
        old = self._challenges.get(addr)
        if old is None or old[1] != msg.sender_id or now_s > old[2]:
            self._new_challenge(addr, msg.sender_id, now_s)
            old = self._challenges[addr]
        self._challenges[addr] = (old[0], old[1], old[2], msg)
        return old[0]

    def _remember_proof(self, addr: Address, node_id: bytes) -> None:
        cache = self._proof_cache
        cache[addr] = node_id
        self._validated.mark(addr)
        if self.on_proven is not None:
            self.on_proven(addr)
        if len(cache) > self.config.proof_cache_size:
            del cache[next(iter(cache))]

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
        if self._tokens.rotate_if_due(now_s, self.rng):
            self._validated.rotate()

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
        proof = self._proof(msg.nonce)
        budget = cfg.max_datagram - wire.REPLY_OVERHEAD - len(addr[0])
        node_id = self.node_id
        if ((t is wire.FindNode or t is wire.FindValue) and not self._validated.check(addr)
                and not self._proven(msg.sender_id, addr)):
            # Address validation (QUIC, RFC 9000 8.1): a NODES/VALUES answer is up to 12x its request, so a
            # source that has not shown it receives at its address gets only a PONG (< 3x any request)
            # with a challenge; the request is held, and answered when the PROOF validates the address.
            self.counters["address_checks"] += 1
            self.send(wire.Pong(msg.tid, node_id, proof, self._hold_until_validated(msg, addr, now_s)), addr)
            return
        if t is wire.FindNode:
            target = int.from_bytes(msg.target, "big")
            contacts = _fit_contacts(self.table.closest(target, cfg.k, sender_int), budget)
            self.send(wire.Nodes(msg.tid, node_id, proof, challenge, self._tokens.issue(addr), contacts), addr)
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
            self.send(wire.Values(msg.tid, node_id, proof, challenge, self._tokens.issue(addr), msg.offset, total,
                                  digest, tuple(values), contacts), addr)
        elif t is wire.Ping:
            self.send(wire.Pong(msg.tid, node_id, proof, challenge), addr)
        elif t is wire.Store:
            if not self._tokens.check(msg.token, addr):
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
        if (hashlib.sha256(pk).digest() != msg.sender_id
                or not self.identity.verify(pk, wire.leave_message(self.node_id, msg.tid), sig)):
            self.counters["drop_bad_proof"] += 1
            return
        self.table.remove(sender_int)
        self.counters["contacts_left"] += 1
        self.lost.pop(addr, None)  # it left: no seed for a rejoin

    def _place_requester(self, sender_id: bytes, sender_int: int, addr: Address, now_s: float) -> bytes | None:
        """Touch a known requester, add a proven one; else return a challenge when its bucket has room."""
        table = self.table
        if table.touch(sender_int, addr):
            return None
        if self._proof_cache.get(addr) == sender_id:
            self._seen_proven(self._contact(sender_id, addr), now_s)
            return None
        if not table.has_room(sender_int) or self.inflight_to(addr):
            return None  # full bucket: not worth a proof; or our own pending request will prove it
        return self._new_challenge(addr, sender_id, now_s)

    def _accept_proof(self, msg: Any, addr: Address, now_s: float) -> None:
        rec = self._challenges.pop(addr, None)
        pk, sig = msg.proof
        if (rec is None or rec[1] != msg.sender_id or now_s > rec[2]
                or hashlib.sha256(pk).digest() != msg.sender_id
                or not self.identity.verify(pk, wire.proof_message(rec[0]), sig)):
            self.counters["drop_bad_proof"] += 1
            return
        self._remember_proof(addr, msg.sender_id)
        self._seen_proven(self._contact(msg.sender_id, addr), now_s)
        if rec[3] is not None:
            self.handle_request(rec[3], addr, now_s)  # the request held until addr was validated

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
            p.busy = True
            self.counters["busy_in"] += 1
            busy = self._busy_until
            busy.pop(addr, None)
            busy[addr] = now_s + BUSY_HOLD_S
            if len(busy) > BUSY_PEERS_KEPT:
                del busy[next(iter(busy))]
            self.last_reply_s = now_s
            self._unanswered_since_s = None
            return
        if p.nonce is not None and not (p.validations and self._proof_cache.get(addr) == msg.sender_id):
            # (an answer after our PROOF is from the id its PONG proved: checked once)
            proof = msg.proof
            if (proof is None or hashlib.sha256(proof[0]).digest() != msg.sender_id
                    or not self.identity.verify(proof[0], wire.proof_message(p.nonce), proof[1])):
                self.counters["drop_bad_proof"] += 1
                return
            self._remember_proof(addr, msg.sender_id)
        validate = (type(msg) is wire.Pong and msg.challenge is not None and p.validations < MAX_VALIDATIONS
                    and type(p.msg) in _VALIDATED_REQUESTS)
        if not validate:
            self._forget(p)
        self.last_reply_s = now_s
        self._unanswered_since_s = None
        if p.attempts == 1 and not p.validations:  # (the answer after our PROOF took two round trips)
            self.rtt_sample(msg.sender_id, now_s - p.sent_s)
        self.table.record_success(int.from_bytes(msg.sender_id, "big"))
        self._seen_proven(self._contact(msg.sender_id, addr), now_s)
        if msg.challenge is not None:
            proof_msg = wire.Proof(0, self.node_id, self._proof(msg.challenge))
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
