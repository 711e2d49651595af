"""SwarmNode: one Kademlia node as a sans-IO state machine (inputs change state, outputs are drained).

How it works:
- Inputs: ``receive_datagram(data, addr, now_s)``, ``handle_timer(now_s)`` and the API calls
  (``bootstrap``, ``start_get``, ``start_put``, ``leave``). Outputs: ``datagrams_to_send()``,
  ``next_event()``, ``get_timer()``. The node never reads a clock, opens a socket or uses global random.
- Every request carries a 32-bit transaction id; its reply must come from the address it was sent to.
  A request carries a fresh nonce unless the recipient's (address, id) binding is already proven (in
  the routing table or the bounded proof cache); the reply must then carry the sender's public key and
  its signature over the nonce. Only proven contacts enter the routing table; a requester we do not
  know gets a challenge in our reply (when its bucket has room) and is added once its PROOF checks out.
- Per-peer adaptive timeouts: RTT EWMA (RFC 6298 weights) per peer, clamp(max(mult * srtt, srtt + 4 *
  rttvar), floor, cap); unknown peers use the node-wide estimate. Timed-out requests are re-sent
  ``rpc_retries`` times with a doubled timeout, then reported failed to their op and the routing table.
- Incoming datagrams pass a per-source token bucket, then ``wire.decode``; anything malformed or
  unexpected is counted in ``counters`` (``drop_*``) and dropped. Replies go only to the source address.
- STORE needs a token (BEP 5) given in our NODES/VALUES answers to that same source address. Values
  pass the size cap and the validator, then the storage policy (``policy.py``: caps, eviction rule,
  tokens, rate limit). Values expire after ``value_ttl_s``; the origin re-stores its own values every
  ``republish_interval_s`` in paced passes: they live in a ``PublishedSet`` (store.py; in memory by
  default, on disk under ``UdpSwarm``). The first pass starts ``republish_interval_s`` after start, or at
  the first tick when the set already held values at start or some were adopted (a restart).
- Housekeeping (expiry, token rotation, bucket refresh, republishing) is ``maintain.py``.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from . import maintain, ops, policy, rpc, storage_policy, wire
from .config import SwarmConfig
from .errors import SwarmUsageError, WireError
from .events import SwarmEvent
from .identity import NodeIdentity
from .routing import Contact, RoutingTable
from .store import MemoryPublishedSet, PublishedSet, ValueStore

log = logging.getLogger(__name__)

Address = tuple[str, int]
CHALLENGE_LIFETIME_S = 30.0
_REQUEST_TYPES = frozenset(wire.REQUEST_TYPES)
COUNTER_NAMES = (
    "received", "sent", "requests_in", "replies_in", "timeouts", "retries", "drop_malformed",
    "drop_rate_limited", "drop_bad_token", "drop_invalid_value", "drop_bad_proof", "drop_unexpected_reply",
    "drop_wrong_reply", "drop_self", "drop_internal_error", "stored", "evicted_address_cap",
    "evicted_node_cap", "expired", "contacts_evicted",
) + storage_policy.COUNTER_NAMES


class Pending:
    __slots__ = ("tid", "msg", "addr", "expected_id", "nonce", "op", "cand", "extra", "sent_s", "deadline_s",
                 "timeout_s", "attempts")

    def __init__(self, tid: int, msg: Any, addr: Address, expected_id: bytes | None, nonce: bytes | None,
                 op: Any, cand: Any, extra: int, sent_s: float, timeout_s: float) -> None:
        self.tid = tid
        self.msg = msg
        self.addr = addr
        self.expected_id = expected_id
        self.nonce = nonce
        self.op = op
        self.cand = cand
        self.extra = extra
        self.sent_s = sent_s
        self.timeout_s = timeout_s
        self.deadline_s = sent_s + timeout_s
        self.attempts = 1


class _ProvePing:
    """Marker op for PINGs that check a contact before evicting it."""

    __slots__ = ("evict", "messages")

    def __init__(self, evict: bool) -> None:
        self.evict = evict
        self.messages = 0

    def on_reply(self, node: SwarmNode, p: Pending, msg: Any, now_s: float) -> None:
        node._proving.discard(p.addr)

    def on_timeout(self, node: SwarmNode, p: Pending, now_s: float) -> None:
        node._proving.discard(p.addr)
        if self.evict and p.expected_id is not None:
            if node.table.remove(int.from_bytes(p.expected_id, "big")):
                node.counters["contacts_evicted"] += 1


_EVICT = _ProvePing(True)


class SwarmNode:
    def __init__(self, identity: NodeIdentity, config: SwarmConfig, rng: random.Random, store: ValueStore,
                 validator: Callable[[bytes, bytes], bool] | None = None,
                 published: PublishedSet | None = None,
                 signer_of: storage_policy.SignerOf | None = None) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.config = config
        self.rng = rng
        self.store = store
        self.validator = validator
        self.table = RoutingTable(identity.node_id, config.k, config.replacement_cache_size,
                                  config.evict_ping_interval_s, config.contact_max_failures)
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.contact_intern: dict[bytes, Contact] | None = None  # the simulator shares Contact objects
        self._out: list[tuple[Any, Address]] = []
        self._events: deque[SwarmEvent] = deque()
        self._pending: dict[int, Pending] = {}
        self._timers: list[tuple[float, int]] = []
        self._proving: set[Address] = set()
        self._challenges: dict[Address, tuple[bytes, bytes, float]] = {}
        self._inflight_addr: dict[Address, int] = {}
        self._proof_cache: dict[Address, bytes] = {}
        self._rtt: dict[bytes, tuple[float, float]] = {}
        self._srtt = config.rpc_timeout_initial_s / max(config.rpc_rtt_multiplier, 1.0)
        self._limiter = policy.RateLimiter(config, rng, self._inflight_to) if config.rate_limit_per_s > 0 else None
        self.storage = storage_policy.StoragePolicy(config, signer_of)
        self._tokens = policy.Tokens(rng, config.token_lifetime_s)
        self._started_s: float | None = None
        self._maint_s = 0.0
        self._republish_s = 0.0
        self._published = published  # None: an in-memory set, made at the first own value
        self._republish_after: bytes | None = None  # cursor: the last address republished
        self._next_op = 1

    # ---- introspection ---------------------------------------------------------------------------
    @property
    def routing_table(self) -> RoutingTable:
        return self.table

    @property
    def published(self) -> PublishedSet:
        """The values this node originated and republishes (default: in memory, ``max_values_per_node``)."""
        if self._published is None:
            self._published = MemoryPublishedSet(self.config.max_values_per_node)
        return self._published

    # ---- inputs ----------------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Address, now_s: float) -> None:
        """Handle one datagram; never raises (bad input is counted in ``counters``)."""
        try:
            self.counters["received"] += 1
            if len(addr) != 2:
                addr = (addr[0], addr[1])  # IPv6 sockets report (host, port, flowinfo, scope_id)
            if self._limiter is not None and not self._limiter.allow(addr, now_s):
                self.counters["drop_rate_limited"] += 1
                return
            try:
                msg = wire.decode(data, self.config.max_datagram)
            except WireError as exc:
                self.counters["drop_malformed"] += 1
                log.debug("malformed datagram from %s: %s", addr, exc)
                return
            self._dispatch(msg, addr, now_s)
        except Exception:  # a bug of ours must not kill the driver; counted so tests catch it
            self.counters["drop_internal_error"] += 1
            log.exception("internal error handling a datagram from %s", addr)

    def receive_message(self, msg: Any, addr: Address, now_s: float) -> None:
        """Simulator fast path: an already decoded message (skips the byte codec)."""
        self.counters["received"] += 1
        if self._limiter is not None and not self._limiter.allow(addr, now_s):
            self.counters["drop_rate_limited"] += 1
            return
        self._dispatch(msg, addr, now_s)

    def handle_timer(self, now_s: float) -> None:
        self._start(now_s)
        timers = self._timers
        while timers and timers[0][0] <= now_s:
            deadline, tid = heapq.heappop(timers)
            p = self._pending.get(tid)  # not cached: _forget replaces an emptied dict
            if p is None or p.deadline_s != deadline:
                continue
            self._expired(p, now_s)
        if now_s >= self._maint_s:
            maintain.run(self, now_s)

    def bootstrap(self, addrs: list[Address], now_s: float) -> None:
        """Join through known addresses (their ids are learnt from their proven PONGs)."""
        self._start(now_s)
        ops.JoinOp(self, [tuple(a) for a in addrs], now_s)  # type: ignore[misc]

    def start_get(self, address: bytes, limit: int, now_s: float) -> int:
        self._start(now_s)
        if type(address) is not bytes or len(address) != 32:
            raise SwarmUsageError("address must be 32 bytes")
        if limit < 1:
            raise SwarmUsageError("limit must be >= 1")
        op_id = self._op_id()
        ops.GetOp(self, op_id, address, limit, now_s)
        return op_id

    def start_put(self, address: bytes, value: bytes, now_s: float) -> int:
        self._start(now_s)
        self._check_own_value(address, value)
        self.published.add(address, value, now_s)  # first: if the set fails (disk), nothing happened
        self._store_value(address, value, now_s)
        op_id = self._op_id()
        ops.PutOp(self, op_id, address, [value], now_s)
        return op_id

    def adopt_published(self, address: bytes, value: bytes, now_s: float = 0.0) -> None:
        """Take back a value this node originated before a restart (``now_s``: when it was put, driver
        time; it only orders an on-disk set's bound): it is added to the published set and republished
        with the node's own values from the next maintenance tick on (no datagram now).
        Invalid values raise SwarmUsageError, as in start_put. (A node given an on-disk set needs no
        adopting: it has them.)"""
        self._check_own_value(address, value)
        self.published.add(address, value, now_s)
        if self._started_s is not None and self._republish_s != math.inf:
            self._republish_s = min(self._republish_s, self._started_s)  # last re-stored: unknown

    def _check_own_value(self, address: bytes, value: bytes) -> None:
        if type(address) is not bytes or len(address) != 32:
            raise SwarmUsageError("address must be 32 bytes")
        if not value or len(value) > self.config.max_value_bytes:
            raise SwarmUsageError("value must be 1..%d bytes" % self.config.max_value_bytes)
        if not self._valid(address, value):
            raise SwarmUsageError("the validator rejected the value; nothing was stored")

    def leave(self, now_s: float) -> None:
        """Graceful leave: hand stored values to the k closest remaining nodes, then LEAVE to contacts;
        ``LeaveDone`` is emitted when done. Republishing stops; the published set is kept (on disk, a
        restarted node republishes it again)."""
        self._start(now_s)
        self._republish_s = math.inf
        self._republish_after = None
        ops.LeaveOp(self, now_s)

    # ---- outputs ---------------------------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = []
        for msg, addr in self._out:
            try:
                out.append((wire.encode(msg), addr))
            except WireError:
                self.counters["drop_internal_error"] += 1
                log.exception("could not encode our own %s", type(msg).__name__)
        self._out = []
        return out

    def messages_to_send(self) -> list[tuple[Any, Address]]:
        """Simulator fast path: outgoing message objects."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> SwarmEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        timers = self._timers
        pending = self._pending
        while timers:
            deadline, tid = timers[0]
            p = pending.get(tid)
            if p is not None and p.deadline_s == deadline:
                break
            heapq.heappop(timers)
        if self._started_s is None:
            return timers[0][0] if timers else None
        return min(timers[0][0], self._maint_s) if timers else self._maint_s

    # ---- internals: sending ----------------------------------------------------------------------
    def _start(self, now_s: float) -> None:
        if self._started_s is None:
            cfg = self.config
            self._started_s = now_s
            self._maint_s = now_s + cfg.maintenance_interval_s
            self._tokens.rotate_if_due(now_s, self.rng)
            self._republish_s = now_s + cfg.republish_interval_s
            if self._published is not None and self._published.count_addresses():
                # Values from before a restart were last re-stored up to an interval ago: pace from the
                # first tick, or a pass starting an interval late would let about half of them expire.
                self._republish_s = now_s

    def _op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _new_tid(self) -> int:
        tid = self.rng.getrandbits(32)
        while tid in self._pending:
            tid = self.rng.getrandbits(32)
        return tid

    def _emit(self, event: SwarmEvent) -> None:
        self._events.append(event)

    def _send(self, msg: Any, addr: Address) -> None:
        self.counters["sent"] += 1
        self._out.append((msg, addr))

    def _proven(self, node_id: bytes, addr: Address) -> bool:
        c = self.table.find(int.from_bytes(node_id, "big"))
        if c is not None and c.addr == addr:
            return True
        return self._proof_cache.get(addr) == node_id

    def _timeout_for(self, node_id: bytes | None) -> float:
        cfg = self.config
        est = self._rtt.get(node_id) if node_id is not None else None
        if est is None:
            t = cfg.rpc_rtt_multiplier * self._srtt
        else:
            t = max(cfg.rpc_rtt_multiplier * est[0], est[0] + 4 * est[1])
        return min(cfg.rpc_timeout_cap_s, max(cfg.rpc_timeout_floor_s, t))

    def _request(self, make: Callable[[int, bytes | None], Any], addr: Address, expected_id: bytes | None,
                 now_s: float, op: Any, cand: Any, extra: int = 0) -> None:
        tid = self._new_tid()
        nonce = None
        if expected_id is None or not self._proven(expected_id, addr):
            nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        msg = make(tid, nonce)
        p = Pending(tid, msg, addr, expected_id, nonce, op, cand, extra, now_s, self._timeout_for(expected_id))
        self._pending[tid] = p
        self._inflight_addr[addr] = self._inflight_addr.get(addr, 0) + 1
        heapq.heappush(self._timers, (p.deadline_s, tid))
        op.messages += 1
        self._send(msg, addr)

    def _expired(self, p: Pending, now_s: float) -> None:
        cfg = self.config
        if p.attempts <= cfg.rpc_retries:
            p.attempts += 1
            p.timeout_s = min(cfg.rpc_timeout_cap_s, p.timeout_s * 2)
            p.deadline_s = now_s + p.timeout_s
            heapq.heappush(self._timers, (p.deadline_s, p.tid))
            self.counters["retries"] += 1
            p.op.messages += 1
            self._send(p.msg, p.addr)
            if p.attempts == 2:
                on_stall = getattr(p.op, "on_stall", None)
                if on_stall is not None:
                    on_stall(self, p, now_s)
            return
        self._forget(p)
        self.counters["timeouts"] += 1
        if p.expected_id is not None and p.op is not _EVICT:
            if self.table.record_failure(int.from_bytes(p.expected_id, "big")):
                self.counters["contacts_evicted"] += 1
        p.op.on_timeout(self, p, now_s)

    def _forget(self, p: Pending) -> None:
        del self._pending[p.tid]
        n = self._inflight_addr[p.addr] - 1
        if n:
            self._inflight_addr[p.addr] = n
        else:
            del self._inflight_addr[p.addr]
        # A dict never shrinks: once a burst (a join's ~100 refresh PINGs) is answered, drop the tables it
        # grew (measured: 7.6 KB per simulated node, most of the joined swarm's memory after the tables).
        if not self._pending:
            self._pending = {}
            self._inflight_addr = {}

    def _inflight_to(self, addr: Address) -> bool:
        return addr in self._inflight_addr

    def _new_challenge(self, addr: Address, node_id: bytes, now_s: float) -> bytes | None:
        old = self._challenges.get(addr)
        if old is not None and old[1] == node_id and now_s <= old[2]:
            return None  # one outstanding challenge per address
        nonce = self.rng.getrandbits(128).to_bytes(16, "big")
        self._challenges[addr] = (nonce, node_id, now_s + CHALLENGE_LIFETIME_S)
        if len(self._challenges) > self.config.challenge_cache_size:
            del self._challenges[next(iter(self._challenges))]
        return nonce

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
            self._ping_before_evict(to_ping, now_s)

    def _ping_before_evict(self, contact: Contact, now_s: float) -> None:
        """PING a table contact once at a time: an answer moves it to its bucket's tail, silence evicts it
        (and promotes a replacement)."""
        if contact.addr not in self._proving:
            self._proving.add(contact.addr)
            self._request(lambda tid, nonce: wire.Ping(tid, self.node_id, nonce), contact.addr,
                          contact.node_id, now_s, _EVICT, None)

    def _remember_proof(self, addr: Address, node_id: bytes) -> None:
        cache = self._proof_cache
        cache[addr] = node_id
        if self._limiter is not None:
            self._limiter.mark_proven(addr)
        if len(cache) > self.config.proof_cache_size:
            del cache[next(iter(cache))]

    def _rtt_sample(self, node_id: bytes, sample: float) -> None:
        est = self._rtt.get(node_id)
        if est is None:
            self._rtt[node_id] = (sample, sample / 2)
            if len(self._rtt) > self.config.rtt_cache_size:
                del self._rtt[next(iter(self._rtt))]
        else:
            srtt, var = est
            self._rtt[node_id] = (0.875 * srtt + 0.125 * sample, 0.75 * var + 0.25 * abs(srtt - sample))
        self._srtt = 0.875 * self._srtt + 0.125 * sample

    # ---- internals: receiving (handlers live in rpc.py) -------------------------------------------
    def _dispatch(self, msg: Any, addr: Address, now_s: float) -> None:
        if self._started_s is None:
            self._start(now_s)
        if msg.sender_id == self.node_id:
            self.counters["drop_self"] += 1
            return
        if type(msg) in _REQUEST_TYPES:
            self.counters["requests_in"] += 1
            rpc.handle_request(self, msg, addr, now_s)
        else:
            self.counters["replies_in"] += 1
            rpc.handle_reply(self, msg, addr, now_s)

    def _valid(self, address: bytes, value: bytes) -> bool:
        ok = len(value) <= self.config.max_value_bytes
        if ok and self.validator is not None:
            try:
                ok = bool(self.validator(address, value))
            except Exception as exc:
                log.debug("validator raised %r: counted as a reject", exc)
                ok = False
        if not ok:
            self.counters["drop_invalid_value"] += 1
        return ok

    def _store_value(self, address: bytes, value: bytes, now_s: float, source: Address | None = None) -> bool:
        return self.storage.store(self.store, address, value, now_s, self.counters, source)

    def _token(self, addr: Address) -> bytes:
        return self._tokens.issue(addr)

    def _token_ok(self, token: bytes, addr: Address) -> bool:
        return self._tokens.check(token, addr)
