"""SwarmNode: one Kademlia node as a sans-IO state machine (inputs change state, outputs are drained).

How it works:
- Inputs: ``receive_datagram(data, addr, now_s)``, ``handle_timer(now_s)`` and the API calls
  (``bootstrap``, ``start_get``, ``start_put``, ``start_put_many``, ``leave``). Outputs: ``datagrams_to_send()``,
  ``next_event()``, ``get_timer()``. The node never reads a clock, opens a socket or uses global random.
- The node is the composition root of the core and owns the datagram entry (per-source rate limit, then
  ``wire.decode``; anything malformed is counted in ``counters`` and dropped), the outgoing queue, the
  events, the counters and the validator. Each other piece of state has one owner:
  ``routing.RoutingTable`` the contacts; ``rpc.Rpc`` the requests in flight and their timers (with
  its parts: validation.py proofs and tokens, isolation.py eviction guards, pacing.py windows, rtt.py);
  ``housekeeping.Housekeeping`` the maintenance and republishing deadlines, the republish cursor, the
  node's own values and the addresses awaiting a hand-over; each operation (ops.py, get.py, put.py, refresh.py,
  membership.py) its own lookup state.
- Operations see the node as a ``requester.Requester`` (send a request, send one-way, emit an event,
  validate a value, read table / store / config): the node implements it with public methods.
- STORE values pass the size cap and the validator, then the storage policy (``storage_policy.py``: caps,
  eviction rule). Values expire after ``value_ttl_s``; the origin re-stores its own values every
  ``republish_interval_s`` in paced passes (housekeeping.py).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import SwarmUsageError, WireError
from . import policy, storage_policy, wire
from .config import SwarmConfig
from .deadlines import OpDeadlines
from .events import SwarmEvent
from .get import GetOp
from .housekeeping import Housekeeping
from .identity import NodeIdentity
from .lookup import Candidate
from .membership import JoinOp, LeaveOp
from .put import PutOp
from .requester import Address, MakeRequest, Op
from .routing import Contact, RoutingTable
from .rpc import Rpc
from .store import PublishedSet, ValueStore

log = logging.getLogger(__name__)

_REQUEST_TYPES = frozenset(wire.REQUEST_TYPES)
_ANSWERED_REQUESTS = frozenset((wire.Ping, wire.FindNode, wire.FindValue, wire.Store))
COUNTER_NAMES = (
    "received", "sent", "requests_in", "replies_in", "timeouts", "retries", "drop_malformed",
    "drop_rate_limited", "drop_bad_token", "drop_invalid_value", "drop_bad_proof", "drop_unexpected_reply",
    "drop_wrong_reply", "drop_self", "drop_internal_error", "stored", "evicted_address_cap",
    "evicted_node_cap", "expired", "contacts_evicted", "drop_bad_holder", "ops_expired", "contacts_left",
    "leave_unsigned", "address_checks", "address_validations",
    "evictions_withheld", "rejoins", "busy_sent", "busy_in", "paced", "pacing_decreases", "retries_held", "held_failed",
) + storage_policy.COUNTER_NAMES


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
        self._out: list[tuple[Any, Address]] = []
        self._events: deque[SwarmEvent] = deque()
        # Proven peers keep their own rate buckets; replies to our own requests are expected traffic.
        self._limiter = (policy.RateLimiter(config, rng, lambda addr: self.rpc.inflight_to(addr))
                         if config.rate_limit_per_s > 0 else None)
        self.storage = storage_policy.StoragePolicy(config, signer_of)
        self._started = False
        self._next_op = 1
        self._deadlines = OpDeadlines()
        self.rpc = Rpc(identity, config, rng, self.table, store, self.counters, self._send, self.valid, self,
                       on_proven=self._limiter.mark_proven if self._limiter is not None else None)
        self.housekeeping = Housekeeping(self, self.rpc, published)
        # Told of every value this node keeps (a peer's STORE, a hand-over, its own put): the gateway's
        # lookup cache counts them without a new lookup (evidence.py). Called on the node's thread.
        self.on_stored: Callable[[bytes, bytes], None] | None = None

    # ---- introspection ---------------------------------------------------------------------------
    @property
    def routing_table(self) -> RoutingTable:
        return self.table

    @property
    def published(self) -> PublishedSet:
        """The values this node originated and republishes (default: in memory, ``max_values_per_node``)."""
        return self.housekeeping.published

    @property
    def awaiting_handover(self) -> int:
        """Addresses of own values put while no peer was known, not yet handed to a peer."""
        return self.housekeeping.awaiting_handover

    @property
    def contact_intern(self) -> dict[bytes, Contact] | None:
        """The simulator shares Contact objects between tables (set it before the first datagram)."""
        return self.rpc.contact_intern

    @contact_intern.setter
    def contact_intern(self, intern: dict[bytes, Contact] | None) -> None:
        self.rpc.contact_intern = intern

    # ---- inputs ----------------------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Address, now_s: float) -> None:
        """Handle one datagram; never raises (bad input is counted in ``counters``)."""
        try:
            self.counters["received"] += 1
            if len(addr) != 2:
                addr = (addr[0], addr[1])  # IPv6 sockets report (host, port, flowinfo, scope_id)
            if self._limiter is not None and not self._limiter.allow(addr, now_s):
                self.counters["drop_rate_limited"] += 1
                if self._limiter.busy_due(addr, now_s):
                    self._answer_busy(data, addr)
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
        self.rpc.fire_timers(now_s)
        self._deadlines.fire(self, now_s)
        self.housekeeping.watch_isolation(now_s)
        if now_s >= self.housekeeping.next_tick_s:
            self.housekeeping.run(now_s)

    def bootstrap(self, addrs: list[Address], now_s: float) -> None:
        """Join through known addresses (their ids are learnt from their proven PONGs)."""
        seeds = [(a[0], a[1]) for a in addrs]
        self.housekeeping.remember_seeds(seeds)  # first: a start with seeds schedules its rejoin check
        self._start(now_s)
        JoinOp(self, seeds, now_s)

    def start_get(self, address: bytes, limit: int, now_s: float) -> int:
        self._start(now_s)
        if type(address) is not bytes or len(address) != 32:
            raise SwarmUsageError("address must be 32 bytes")
        if limit < 1:
            raise SwarmUsageError("limit must be >= 1")
        op_id = self._op_id()
        GetOp(self, op_id, address, limit, now_s)
        return op_id

    def start_put(self, address: bytes, value: bytes, now_s: float) -> int:
        return self.start_put_many(address, [value], now_s)

    def start_put_many(self, address: bytes, values: list[bytes], now_s: float) -> int:
        """One put of several values at one address: one lookup, then STOREs paged to each closest node
        (``PutOp``). All or nothing: one invalid value refuses the lot (SwarmUsageError) before any is kept.
        Values the holders' per-signer quota would evict before the put ends are left out (counted in
        ``put_superseded``; only their size is checked, the validator sees the others); the others are
        put."""
        self._start(now_s)
        if not values:
            raise SwarmUsageError("a put needs at least one value")
        for value in values:
            self._check_own_value(address, value, validate=False)
        # Values of one signer beyond its quota would be stored and evicted again within this put (the
        # quota keeps the newest): not sent, not kept, not republished (storage_policy.py), and not
        # validated either (a signature-cache look-up and a decode each, for nothing).
        kept = self.storage.surviving(values)
        self.counters["put_superseded"] += len(values) - len(kept)
        values = kept
        for value in values:
            self._check_own_value(address, value)
        for value in values:  # first: if the set fails (disk), nothing happened
            self.housekeeping.published.add(address, value, now_s)
        for value in values:
            self.store_value(address, value, now_s)
        self.housekeeping.note_if_alone(address)
        op_id = self._op_id()
        PutOp(self, op_id, address, list(values), now_s)
        return op_id

    def adopt_published(self, address: bytes, value: bytes, now_s: float = 0.0) -> None:
        """Take back a value this node originated before a restart (``now_s``: when it was put, driver
        time; it only orders an on-disk set's bound): it is added to the published set and republished
        with the node's own values from the next maintenance tick on (no datagram now).
        Invalid values raise SwarmUsageError, as in start_put. (A node given an on-disk set needs no
        adopting: it has them.)"""
        self._check_own_value(address, value)
        self.housekeeping.published.add(address, value, now_s)
        self.housekeeping.adopted()

    def _check_own_value(self, address: bytes, value: bytes, validate: bool = True) -> None:
        if type(address) is not bytes or len(address) != 32:
            raise SwarmUsageError("address must be 32 bytes")
        if not value or len(value) > self.config.max_value_bytes:
            raise SwarmUsageError("value must be 1..%d bytes" % self.config.max_value_bytes)
        if validate and not self.valid(address, value):
            raise SwarmUsageError("the validator rejected the value; nothing was stored")

    def leave(self, now_s: float) -> None:
        """Graceful leave: hand stored values to the k closest remaining nodes, then LEAVE to contacts;
        ``LeaveDone`` is emitted when done. Republishing stops; the published set is kept (on disk, a
        restarted node republishes it again)."""
        self._start(now_s)
        self.housekeeping.stop_republishing()
        LeaveOp(self, now_s)

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
        deadline = self.rpc.next_deadline()
        op_deadline = self._deadlines.next_deadline()
        if op_deadline is not None and (deadline is None or op_deadline < deadline):
            deadline = op_deadline
        if not self._started:
            return deadline
        tick = self.housekeeping.next_tick_s
        return tick if deadline is None else min(deadline, tick)

    # ---- the Requester interface (what operations may use) ---------------------------------------
    def request(self, make: MakeRequest, addr: Address, expected_id: bytes | None, now_s: float, op: Op, *,
                cand: Candidate | None = None, target: int | None = None, page_offset: int = 0,
                counts_replica: bool = False) -> None:
        self.rpc.request(make, addr, expected_id, now_s, op, cand=cand, target=target, page_offset=page_offset,
                         counts_replica=counts_replica)

    def send_oneway(self, make: Callable[[int], Any], addr: Address) -> None:
        self._send(make(self.rpc.new_tid()), addr)

    def signed_leave(self, recipient_id: bytes, tid: int) -> Any:
        return self.rpc.signed_leave(recipient_id, tid)

    def emit(self, event: SwarmEvent) -> None:
        self._events.append(event)

    def valid(self, address: bytes, value: bytes) -> bool:
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

    def inflight_to(self, addr: Address) -> bool:
        return self.rpc.inflight_to(addr)

    def add_deadline(self, deadline_s: float, op: Any) -> None:
        self._deadlines.add(deadline_s, op)

    def store_value(self, address: bytes, value: bytes, now_s: float, source: Address | None = None) -> bool:
        """Store a valid value under the storage policy (per-signer quota, eviction, new-signer pacing per
        ``source``); False when the policy refused it."""
        stored = self.storage.store(self.store, address, value, now_s, self.counters, source)
        if stored and self.on_stored is not None:
            self.on_stored(address, value)
        return stored

    def rate_refusals(self) -> dict[str, int]:
        """Datagrams the rate limiter refused, by class of source (docs/security.md)."""
        if self._limiter is None:
            return {}
        return {"rate_refused_proven": self._limiter.refused_proven,
                "rate_refused_unproven": self._limiter.refused_unproven}

    # ---- internals -------------------------------------------------------------------------------
    def _start(self, now_s: float) -> None:
        if not self._started:
            self._started = True
            self.housekeeping.start(now_s)

    def _op_id(self) -> int:
        op_id = self._next_op
        self._next_op += 1
        return op_id

    def _send(self, msg: Any, addr: Address) -> None:
        self.counters["sent"] += 1
        self._out.append((msg, addr))

    def _answer_busy(self, data: bytes, addr: Address) -> None:
        """Back-pressure to a proven peer whose request the rate limiter refused (one per interval)."""
        try:
            msg = wire.decode(data, self.config.max_datagram)
        except WireError:
            return
        if type(msg) in _ANSWERED_REQUESTS:
            self.counters["busy_sent"] += 1
            self._send(wire.Busy(msg.tid, self.node_id), addr)

    def _dispatch(self, msg: Any, addr: Address, now_s: float) -> None:
        if not self._started:
            self._start(now_s)
        if msg.sender_id == self.node_id:
            self.counters["drop_self"] += 1
            return
        if type(msg) in _REQUEST_TYPES:
            self.counters["requests_in"] += 1
            self.rpc.handle_request(msg, addr, now_s)
        else:
            self.counters["replies_in"] += 1
            self.rpc.handle_reply(msg, addr, now_s)
