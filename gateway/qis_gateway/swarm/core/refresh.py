"""Bucket refresh (Kademlia §2.3): ``RefreshOp`` fills one bucket with proven contacts spread over its range.

Used at join (membership.py) and by housekeeping for buckets no lookup touched for ``refresh_interval_s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import wire
from .requester import Pending, Requester
from .routing import Contact

STRATA_BITS = 1  # halves: two FIND_NODEs per bucket, each answered with a whole bucket of the responder


class RefreshOp:
    """Fill bucket ``i`` with proven contacts spread evenly over its range (Kademlia §2.3 refresh).

    The bucket's range is cut into halves (the bit after the bucket's prefix bit). For each half,
    FIND_NODE for a random id in it goes to our closest contact *outside* that half; the nearest such is
    in the other half, and for it our half is exactly one of its own buckets (the ids sharing its prefix
    down to the bit where the halves differ), so it answers with that whole bucket: k nodes spread over
    the half as evenly as its table is, not the nodes bunched around one id. (A contact in a lower bucket
    of ours answers with its bucket covering our whole bucket: spread too.) Up to k/2 of the answer's
    unknown contacts in the half, picked at random, get a PING (the PONG proves the id and adds the
    contact). A last round asks the same way for the half holding fewer contacts while room is left.

    Why: a bucket filled around one point gives later lookups into the rest of its range few bits per hop
    (measured, tables as full as the ideal ones: hops p99 one worse); quarters each filled around one
    point (the previous version) still bunched far buckets (two of their ids shared 1.35 bits below the
    bucket's bit on average, a random sample 1.0)."""

    __slots__ = ("bucket", "on_done", "done", "messages", "inflight", "asked", "final_round")

    def __init__(self, req: Requester, bucket: int, on_done: Callable[..., None] | None, now_s: float) -> None:
        self.bucket = bucket
        self.on_done = on_done
        self.done = False
        self.messages = 0
        self.inflight = 0
        self.asked: set[int] = set()
        self.final_round = False
        strata = 1 << min(STRATA_BITS, bucket)
        if self._room(req) > 0:
            for q in range(strata):
                self._ask(req, self._target(req, q, strata), now_s)
        if self.inflight == 0:
            self._finish(req, now_s)

    def _room(self, req: Requester) -> int:
        return req.config.k - len(req.table.buckets.get(self.bucket, ()))

    def _target(self, req: Requester, q: int, strata: int) -> int:
        """A random id in stratum ``q`` of the bucket's range (ids whose XOR with ours has bit i set)."""
        low = self.bucket - (strata.bit_length() - 1)  # bits below the stratum's own bits
        dist = (1 << self.bucket) | (q << low) | (req.rng.getrandbits(low) if low > 0 else 0)
        return req.table.own_int ^ dist

    def _responder(self, req: Requester, t: int, shift: int) -> Contact | None:
        """Who to ask for ``t``: our closest contact not asked yet that lies outside ``t``'s stratum (the ids
        sharing ``t``'s bits from bit ``shift`` up), so that its answer is one of its whole buckets, not the
        nodes around ``t``; the nearest such is in the sibling stratum. Else our closest not asked."""
        asked = self.asked
        fallback = None
        for c in req.table.closest(t, req.config.alpha + len(asked) + req.config.k):
            if c.id_int in asked:
                continue
            if (c.id_int ^ t) >> shift:
                return c
            if fallback is None:
                fallback = c
        return fallback

    def _ask(self, req: Requester, t: int, now_s: float) -> None:
        req.table.mark_used(t, now_s)
        c = self._responder(req, t, max(self.bucket - STRATA_BITS, 0))
        if c is None:
            return
        target = t.to_bytes(32, "big")
        self.asked.add(c.id_int)
        self.inflight += 1
        req.request(lambda tid, nonce: wire.FindNode(tid, req.node_id, nonce, target),
                    c.addr, c.node_id, now_s, self, target=t)

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        self.inflight -= 1
        if p.target is not None and type(msg) is wire.Nodes:
            self._ping_some(req, p.target, msg.contacts, now_s)
        elif p.target is not None:
            req.counters["drop_wrong_reply"] += 1
        self._next(req, now_s)

    def _ping_some(self, req: Requester, target: int, contacts: tuple[Any, ...], now_s: float) -> None:
        table = req.table
        i = self.bucket
        shift = max(i - STRATA_BITS, 0)
        own = table.own_int
        stratum = (target ^ own) >> shift
        final = self.final_round
        # cheap integer tests first: the stratum (which implies the bucket), then the table and in-flight
        fresh = [c for c in contacts
                 if ((c.id_int ^ own) >> shift == stratum if not final else (c.id_int ^ own).bit_length() - 1 == i)
                 and table.find(c.id_int) is None and not req.inflight_to(c.addr)]
        quota = min(self._room(req), req.config.k if final else -(-req.config.k >> STRATA_BITS))
        if len(fresh) > quota:
            fresh = req.rng.sample(fresh, quota)
        for c in fresh:
            self.inflight += 1
            req.request(lambda tid, nonce: wire.Ping(tid, req.node_id, nonce), c.addr, c.node_id, now_s, self)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        if self.done:
            return
        self.inflight -= 1
        self._next(req, now_s)

    def _next(self, req: Requester, now_s: float) -> None:
        if self.inflight:
            return
        if not self.final_round and self._room(req) > 0:
            self.final_round = True
            strata = 1 << min(STRATA_BITS, self.bucket)
            self._ask(req, self._target(req, self._emptiest(req, strata), strata), now_s)
            if self.inflight:
                return
        self._finish(req, now_s)

    def _emptiest(self, req: Requester, strata: int) -> int:
        """The stratum of the bucket holding the fewest contacts (the last round's target)."""
        if strata == 1:
            return 0
        own = req.table.own_int
        shift = self.bucket - STRATA_BITS
        held = [0] * strata
        for c in req.table.buckets.get(self.bucket, ()):
            held[((c.id_int ^ own) >> shift) & (strata - 1)] += 1
        return held.index(min(held))

    def _finish(self, req: Requester, now_s: float) -> None:
        if not self.done:
            self.done = True
            if self.on_done is not None:
                self.on_done(req, self, now_s)
