"""Operations a node runs over many RPCs: node lookups here; get (get.py), put (put.py).

How it works: each op object owns its lookup state and reacts to ``on_reply`` / ``on_timeout`` for the
requests it sent (the RPC layer routes replies by transaction id). Ops see their node only through the
``Requester`` interface (requester.py): send a request, emit an event, validate a value, read the table
and the store; they never touch time or I/O themselves. Lookups are seeded with the 2k closest contacts
of our table: only the k closest non-failed are asked, the rest stand in for dead ones.

- ``FindNodeOp``: iterative FIND_NODE towards a target; calls ``on_done(req, op, now)`` when finished.
- ``GetOp`` (get.py): iterative FIND_VALUE, each holder paged with a window of pages in flight.
- ``PutOp`` (put.py): FIND_NODE for the address (collecting each answer's STORE token), then STOREs in
  pages to the k closest that answered, a few in flight per holder; ``replicas`` = nodes that kept every
  value.

Every operation has a deadline of its own (``op_deadline_s`` after it started; a put's node lookup gets
the first half): at the deadline it finishes with what it has (``expire``; the values or replicas so
far) and sends nothing more (deadlines.py; the RPC layer re-sends no request of a finished op).

Bucket refresh is ``refresh.py``; join and leave are ``membership.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import wire
from .lookup import Lookup
from .requester import Pending, Requester


class FindNodeOp:
    __slots__ = ("target", "lookup", "on_done", "done", "messages")

    def __init__(self, req: Requester, target: bytes, on_done: Callable[..., None] | None, now_s: float,
                 deadline_s: float | None = None, reask: int = 0) -> None:
        self.target = target
        t = int.from_bytes(target, "big")
        req.table.mark_used(t, now_s)
        self.lookup = Lookup(t, req.config.k, req.config.alpha, req.table.closest(t, 2 * req.config.k),
                             req.table.own_int, reask)
        self.on_done = on_done
        self.done = False
        self.messages = 0
        req.add_deadline(now_s + req.config.op_deadline_s if deadline_s is None else deadline_s, self)
        self.step(req, now_s)

    def expire(self, req: Requester, now_s: float) -> None:
        """The deadline passed: finish with the candidates that answered so far."""
        self._finish(req, now_s)

    def cancel(self) -> None:
        """Stop without calling back (its owner finished); nothing more is sent."""
        self.done = True

    def _finish(self, req: Requester, now_s: float) -> None:
        self.done = True
        if self.on_done is not None:
            self.on_done(req, self, now_s)

    def step(self, req: Requester, now_s: float) -> None:
        if self.done:
            return
        for cand in self.lookup.next_requests():
            req.request(lambda tid, nonce: wire.FindNode(tid, req.node_id, nonce, self.target),
                        cand.contact.addr, cand.contact.node_id, now_s, self, cand=cand)
        if self.lookup.inflight == 0 and self.lookup.finished():
            self._finish(req, now_s)

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        if type(msg) is wire.Nodes:
            self.lookup.answered(p.cand, msg.contacts, msg.token)
        else:
            req.counters["drop_wrong_reply"] += 1
            self.lookup.failed(p.cand)
        self.step(req, now_s)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        if self.done:
            return
        self.lookup.timed_out(p.cand)
        self.step(req, now_s)

    def on_stall(self, req: Requester, p: Pending, now_s: float) -> None:
        if not self.done:
            self.lookup.stalled(p.cand)
            self.step(req, now_s)

    def hops(self) -> int:
        return max((c.depth for c in self.lookup.closest_answered(self.lookup.k)), default=0)
