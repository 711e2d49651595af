"""Housekeeping of a SwarmNode: the ``Housekeeping`` object owns the maintenance deadline, the republishing
deadline and cursor, the node's own values (the published set) and the addresses awaiting a hand-over.

How it works (``run`` every ``maintenance_interval_s``, from ``SwarmNode.handle_timer``):
- Stored values past ``value_ttl_s`` expire; the STORE-token secret rotates when due (``Rpc.rotate_tokens``).
- Buckets with no lookup in their range for ``refresh_interval_s`` (Kademlia §2.3): one with room gets a
  ``RefreshOp``; a full one has nothing to learn, so its least-recently-seen contact gets a PING instead
  (an answer moves it to the tail, silence evicts it and promotes a replacement), as BEP 5 does.
- The node's own values are re-stored in paced passes (Kademlia §2.5): a pass walks the published set's
  addresses in ascending order after a cursor, ceil(addresses * maintenance_interval_s /
  republish_interval_s) of them per tick, so it ends within one interval, and the next pass starts one
  interval after this one started. An address is thus re-stored once per interval, never all at once (a
  value put just before the cursor reaches its address is re-stored soon after its put; one put behind
  the cursor waits for the next pass). Values the validator now rejects (a changed trust list) are
  skipped, not deleted. The first pass starts ``republish_interval_s`` after start, or at the first tick
  when the set already held values at start or some were adopted (a restart).
- Isolation: the rejoin checks of ``rejoin.Rejoin`` (below ``rejoin_below`` contacts, a join through the
  bootstrap addresses and the contacts lost lately) run on the same timer; they are separate from
  maintenance, whose pace they do not change.
- A swarm of one: own values put while the routing table was empty (``note_if_alone``) are handed to
  peers as soon as the table holds one: ``handover_per_tick`` addresses per tick, each address's locally
  held values in one put; an address whose put reached nobody is kept for a later tick.
"""

from __future__ import annotations

import itertools
import math

from .config import SwarmConfig
from .put import PutOp
from .refresh import RefreshOp
from .rejoin import Rejoin
from .requester import Address, Requester
from .rpc import Rpc
from .store import MemoryPublishedSet, PublishedSet


class Housekeeping:
    def __init__(self, req: Requester, rpc: Rpc, published: PublishedSet | None) -> None:
        self.req = req
        self.rpc = rpc
        self.config: SwarmConfig = req.config
        self.started_s: float | None = None
        self.next_tick_s = 0.0
        self._published = published  # None: an in-memory set, made at the first own value
        self._republish_s = 0.0
        self._republish_after: bytes | None = None  # cursor: the last address republished
        self._unreplicated: dict[bytes, None] = {}  # own addresses put while alone, oldest first
        self._maintain_s = 0.0  # next maintenance tick (next_tick_s may be an earlier rejoin check)
        self.rejoin = Rejoin(req, rpc.isolation)

    @property
    def published(self) -> PublishedSet:
        """The values this node originated and republishes (default: in memory, ``max_values_per_node``)."""
        if self._published is None:
            self._published = MemoryPublishedSet(self.config.max_values_per_node)
        return self._published

    @property
    def awaiting_handover(self) -> int:
        return len(self._unreplicated)

    def start(self, now_s: float) -> None:
        cfg = self.config
        self.started_s = now_s
        self._maintain_s = now_s + cfg.maintenance_interval_s
        self.rejoin.start(now_s)
        self.next_tick_s = min(self._maintain_s, self.rejoin.due_s)
        self.rpc.rotate_tokens(now_s)
        self._republish_s = now_s + cfg.republish_interval_s
        if self._published is not None and self._published.count_addresses():
            # Values from before a restart were last re-stored up to an interval ago: pace from the
            # first tick, or a pass starting an interval late would let about half of them expire.
            self._republish_s = now_s

    def adopted(self) -> None:
        """A value from before a restart was added by hand: its last re-store is unknown, so the next pass
        starts at the next tick (unless republishing was stopped by a leave)."""
        if self.started_s is not None and self._republish_s != math.inf:
            self._republish_s = min(self._republish_s, self.started_s)

    def stop_republishing(self) -> None:
        """A leave: no more passes; the published set is kept (on disk, a restart republishes it)."""
        self._republish_s = math.inf
        self._republish_after = None

    def note_if_alone(self, address: bytes) -> None:
        """A swarm of one: with no contact, the local copy is the only one; remember the address so that
        ``hand_over`` gives it to the first peers."""
        if len(self.req.table):
            return
        unreplicated = self._unreplicated
        unreplicated.pop(address, None)
        unreplicated[address] = None
        if len(unreplicated) > self.config.handover_max_addresses:
            del unreplicated[next(iter(unreplicated))]  # the republishing pass still covers it

    def remember_seeds(self, addrs: list[Address]) -> None:
        self.rejoin.remember_seeds(addrs)

    def run(self, now_s: float) -> None:
        if now_s >= self._maintain_s:
            self._maintain_s = now_s + self.config.maintenance_interval_s
            self.maintain(now_s)
        self.rejoin.check(now_s)
        self.next_tick_s = min(self._maintain_s, self.rejoin.due_s)

    def watch_isolation(self, now_s: float) -> None:
        """After request timeouts (cheap): a table that fell below ``rejoin_below`` gets its rejoin
        scheduled now rather than at the next maintenance tick."""
        self.rejoin.watch(now_s)
        self.next_tick_s = min(self.next_tick_s, self.rejoin.due_s)

    def maintain(self, now_s: float) -> None:
        req = self.req
        cfg = self.config
        req.counters["expired"] += req.store.expire(now_s)
        self.rpc.rotate_tokens(now_s)
        table = req.table
        since_s = self.started_s if self.started_s is not None else now_s
        for i in table.stale_buckets(now_s, cfg.refresh_interval_s, since_s):
            bucket = table.buckets[i]
            if len(bucket) < cfg.k:
                RefreshOp(req, i, None, now_s)
                continue
            table.mark_used(table.own_int ^ (1 << i), now_s)  # any id in bucket i
            self.rpc.ping_before_evict(bucket[0], now_s)
        if self._published is not None and (self._republish_after is not None or now_s >= self._republish_s):
            self.republish_next(now_s)
        if self._unreplicated and len(table):
            self.hand_over(now_s)

    def republish_next(self, now_s: float) -> None:
        """Re-store the next slice of the node's own values (see the module docstring)."""
        req = self.req
        cfg = self.config
        published = self.published
        if self._republish_after is None:  # a new pass
            self._republish_s = now_s + cfg.republish_interval_s
        n = published.count_addresses()
        if cfg.republish_interval_s > 0:
            size = math.ceil(n * cfg.maintenance_interval_s / cfg.republish_interval_s)
        else:
            size = n
        page = published.page(self._republish_after, size) if size > 0 else []
        self._republish_after = page[-1][0] if len(page) == size and page else None  # None: pass done
        for address, held in page:
            # The set holds the values of every earlier put; of one signer a holder keeps only its newest
            # quota. Re-sent, the older ones were stored again and evicted the newer ones in turn (and
            # took the set's room from other addresses), so the pass re-stores what a put of them all
            # would leave (held is oldest first, as surviving() expects) and forgets the rest.
            kept = req.storage.surviving(held)
            if len(kept) < len(held):
                req.counters["put_superseded"] += len(held) - len(kept)
                survivors = set(kept)
                published.discard(address, [v for v in held if v not in survivors])
            values = [v for v in kept if req.valid(address, v)]
            if not values:
                continue
            for v in values:
                req.store_value(address, v, now_s)
            self.note_if_alone(address)
            PutOp(req, 0, address, values, now_s, report=False)

    def hand_over(self, now_s: float) -> None:
        """Put the next ``handover_per_tick`` addresses stored while alone to the peers now known."""
        req = self.req
        cfg = self.config
        unreplicated = self._unreplicated
        batch = list(itertools.islice(unreplicated, cfg.handover_per_tick))
        for address in batch:
            del unreplicated[address]
            values = [v for v in req.store.values(address, cfg.max_values_per_address) if req.valid(address, v)]
            if values:
                PutOp(req, 0, address, values, now_s, report=False, on_done=self._handed)

    def _handed(self, req: Requester, op: PutOp, now_s: float) -> None:
        if op.replicas == 0 and len(self._unreplicated) < self.config.handover_max_addresses:
            self._unreplicated.setdefault(op.address, None)  # nobody took it: try again at a later tick
