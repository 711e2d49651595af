"""Isolation guard of a SwarmNode (issue 18 point 4): when may a request that timed out count against its
contact, and which addresses seed a rejoin.

How it works (``Isolation`` owns every piece of state named here; the RPC layer reports to it):
- ``sent`` / ``answered``: when a peer last answered one of our requests, and when the first request
  sent after that answer went out. ``may_evict``: a failed request counts against its contact only when
  the table holds more than ``contact_floor`` contacts and another peer answered after it was sent.
  Otherwise every request is timing out and the fault is most likely our own (a burst, a dead link):
  evicting would isolate us. After ``isolation_grace_s`` without any answer the contacts are most
  likely gone (a lone peer died): then they are evicted as before, and the rejoin looks for them.
- ``busy``: a peer answered BUSY (it is alive and shedding load); for ``BUSY_HOLD_S`` its silence is
  back-pressure, not death (``shedding``), since its limiter answers at most one refused datagram per
  interval.
- ``ProvePing``: the op of the PINGs that check a contact before evicting it (a full bucket, an unsigned
  LEAVE): silence evicts it only under the same guard.
- ``lost``: the addresses of contacts evicted lately (``LOST_CONTACTS_KEPT``), rejoin seeds for
  housekeeping; a contact that left with a signed LEAVE is no seed (``left``).
"""

from __future__ import annotations

from typing import Any

from .config import SwarmConfig
from .requester import Address, Pending, Requester
from .routing import RoutingTable

LOST_CONTACTS_KEPT = 32
BUSY_HOLD_S = 5.0  # after a BUSY, failed requests to that peer are back-pressure, not death
BUSY_PEERS_KEPT = 256


class Isolation:
    __slots__ = ("config", "counters", "last_reply_s", "_unanswered_since_s", "_busy_until", "lost")

    def __init__(self, config: SwarmConfig, counters: dict[str, int]) -> None:
        self.config = config
        self.counters = counters
        self.last_reply_s = -1.0e18  # when a peer last answered one of our requests
        self._unanswered_since_s: float | None = None  # first request sent after that answer
        self._busy_until: dict[Address, float] = {}  # peers that answered BUSY lately
        self.lost: dict[Address, None] = {}  # addresses of contacts removed lately (seeds for a rejoin)

    def sent(self, now_s: float) -> None:
        if self._unanswered_since_s is None:
            self._unanswered_since_s = now_s

    def answered(self, now_s: float) -> None:
        self.last_reply_s = now_s
        self._unanswered_since_s = None

    def busy(self, addr: Address, now_s: float) -> None:
        """A BUSY from ``addr``: an answer (the peer is alive), and its silence is excused for a while."""
        busy = self._busy_until
        busy.pop(addr, None)
        busy[addr] = now_s + BUSY_HOLD_S
        if len(busy) > BUSY_PEERS_KEPT:
            del busy[next(iter(busy))]
        self.answered(now_s)

    def shedding(self, p: Pending, now_s: float) -> bool:
        """The peer told us it is shedding load within the last ``BUSY_HOLD_S``."""
        return p.busy or now_s <= self._busy_until.get(p.addr, -1.0)

    def may_evict(self, p: Pending, now_s: float, contacts: int) -> bool:
        """A timed-out request may count against its contact (see the module docstring)."""
        cfg = self.config
        silent = self._unanswered_since_s
        if ((contacts > cfg.contact_floor and self.last_reply_s > p.sent_s)
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

    def left(self, addr: Address) -> None:
        """It left with a signed LEAVE: no seed for a rejoin."""
        self.lost.pop(addr, None)


class ProvePing:
    """The op of PINGs that check a contact before evicting it (``Rpc.ping_before_evict``)."""

    __slots__ = ("isolation", "table", "proving", "messages")

    def __init__(self, isolation: Isolation, table: RoutingTable, proving: set[Address]) -> None:
        self.isolation = isolation
        self.table = table
        self.proving = proving  # the RPC layer's set of addresses with such a PING in flight
        self.messages = 0

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        self.proving.discard(p.addr)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        self.proving.discard(p.addr)
        iso = self.isolation
        if (p.expected_id is not None and not iso.shedding(p, now_s) and iso.may_evict(p, now_s, len(self.table))
                and self.table.remove(int.from_bytes(p.expected_id, "big"))):
            iso.lost_contact(p.addr)
