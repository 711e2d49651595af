"""Operations a node runs over many RPCs: node lookups, get, put (and republish / hand-off).

How it works: each op object owns its lookup state and reacts to ``on_reply`` / ``on_timeout`` for the
requests it sent (the RPC layer routes replies by transaction id). Ops see their node only through the
``Requester`` interface (requester.py): send a request, emit an event, validate a value, read the table
and the store; they never touch time or I/O themselves. Lookups are seeded with the 2k closest contacts
of our table: only the k closest non-failed are asked, the rest stand in for dead ones.

- ``FindNodeOp``: iterative FIND_NODE towards a target; calls ``on_done(req, op, now)`` when finished.
- ``GetOp``: iterative FIND_VALUE. A holder answers with one page of values (as many as fit in a datagram),
  its total and the digest of its whole set. A holder is complete once the digest of the values we
  collected equals its digest, or once we paged it to the end; the op pages one incomplete holder at a
  time (further pages from that same holder). Done when ``limit`` values are in, or ``get_quorum``
  holders are complete, or the lookup is exhausted. Identical replicas cost one request each.
  Hostile holders (issue 18 point 2): a page must start at the offset we asked for, a claimed total
  counts for at most ``max_values_per_address`` values (so at most that many pages per holder), and a
  peer whose answer holds an invalid value (checked until the first one) or the wrong offset is dropped
  from the lookup (no holder, its contacts unused) and demoted in the routing table (one failure).
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
from .events import GetDone
from .lookup import ANSWERED, Candidate, Lookup
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


class _Holder:
    __slots__ = ("cand", "digest", "total", "next_offset", "paging", "complete")

    def __init__(self, cand: Candidate, digest: bytes, total: int, next_offset: int) -> None:
        self.cand = cand
        self.digest = digest
        self.total = total  # already capped at max_values_per_address
        self.next_offset = next_offset
        self.paging = False
        self.complete = next_offset >= total


class GetOp:
    __slots__ = ("op_id", "address", "limit", "lookup", "started_s", "values", "digest", "first_value_s", "hops",
                 "holders", "pages_inflight", "done", "messages")

    def __init__(self, req: Requester, op_id: int, address: bytes, limit: int, now_s: float) -> None:
        self.op_id = op_id
        self.address = address
        self.limit = limit
        t = int.from_bytes(address, "big")
        req.table.mark_used(t, now_s)
        self.lookup = Lookup(t, req.config.k, req.config.alpha, req.table.closest(t, 2 * req.config.k),
                             req.table.own_int)
        self.started_s = now_s
        self.values: dict[bytes, None] = {}
        self.digest = 0
        for v in req.store.values(address, limit):
            self._add(v)
        self.first_value_s: float | None = 0.0 if self.values else None
        self.hops: int | None = None
        self.holders: list[_Holder] = []
        self.pages_inflight = 0
        self.done = False
        self.messages = 0
        req.add_deadline(now_s + req.config.op_deadline_s, self)
        self.step(req, now_s)

    def _add(self, value: bytes) -> None:
        self.values[value] = None
        self.digest ^= wire.value_hash(value)

    def _ask(self, req: Requester, cand: Candidate, offset: int, now_s: float) -> None:
        req.request(lambda tid, nonce: wire.FindValue(tid, req.node_id, nonce, self.address, offset),
                    cand.contact.addr, cand.contact.node_id, now_s, self, cand=cand, page_offset=offset)

    def step(self, req: Requester, now_s: float) -> None:
        """Holders whose digest equals our collection's are complete; page at most one holder at a time,
        and only one whose set still differs from ours."""
        if self.done:
            return
        mine = self.digest.to_bytes(8, "big")
        complete = 0
        paging = False
        for h in self.holders:
            if not h.complete and h.digest == mine:
                h.complete = True
            complete += h.complete
            paging = paging or h.paging
        if len(self.values) >= self.limit or complete >= req.config.get_quorum:
            self.finish(req, now_s, True)
            return
        if not paging:
            for h in self.holders:
                if not h.complete:
                    h.paging = True
                    self.pages_inflight += 1
                    self._ask(req, h.cand, h.next_offset, now_s)
                    break
        if len(self.holders) < req.config.get_quorum:  # enough holders known: only page them now
            for cand in self.lookup.next_requests():
                self._ask(req, cand, 0, now_s)
        if self.lookup.inflight == 0 and self.pages_inflight == 0 and (
                self.lookup.finished() or len(self.holders) >= req.config.get_quorum):
            self.finish(req, now_s, self._reached_someone())

    def _reached_someone(self) -> bool:
        return bool(self.values) or any(c.state == ANSWERED for c in self.lookup.by_id.values())

    def expire(self, req: Requester, now_s: float) -> None:
        """The deadline passed: finish with the values collected so far."""
        self.finish(req, now_s, self._reached_someone())

    def finish(self, req: Requester, now_s: float, ok: bool) -> None:
        self.done = True
        hops = self.hops if self.hops is not None else max(
            (c.depth for c in self.lookup.closest_answered(self.lookup.k)), default=0)
        req.emit(GetDone(self.op_id, self.address, tuple(self.values)[: self.limit], hops, self.messages,
                           self.first_value_s, now_s - self.started_s, ok))

    def _holder(self, cand: Candidate) -> _Holder | None:
        for h in self.holders:
            if h.cand is cand:
                return h
        return None

    def _drop(self, req: Requester, cand: Candidate, holder: _Holder | None) -> None:
        """A peer that served an invalid value or a page we did not ask for: it is no holder of this
        lookup (its contacts are not used either) and its routing-table entry is demoted."""
        if holder is not None:
            self.holders.remove(holder)
        self.lookup.failed(cand)
        req.counters["drop_bad_holder"] += 1
        if req.table.record_failure(cand.contact.id_int):
            req.counters["contacts_evicted"] += 1

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        asked = p.page_offset
        page = asked != 0
        holder = self._holder(p.cand) if page else None
        if holder is not None:
            holder.paging = False
            self.pages_inflight -= 1
        if type(msg) is not wire.Values:
            req.counters["drop_wrong_reply"] += 1
            if holder is not None:
                holder.complete = True  # give up on this holder
            else:
                self.lookup.failed(p.cand)
            self.step(req, now_s)
            return
        if msg.offset != asked:  # never trust an echoed offset: it must be the one we asked for
            self._drop(req, p.cand, holder)
            self.step(req, now_s)
            return
        fresh: list[bytes] = []
        for v in msg.values:
            if v in self.values or v in fresh:
                continue
            if not req.valid(self.address, v):
                # A holder stores only values it validated: an invalid one means a hostile (or differently
                # trusting) peer. Stop at the first: one failed check per reply, whatever the page holds.
                self._drop(req, p.cand, holder)
                self.step(req, now_s)
                return
            fresh.append(v)
        if not page:
            self.lookup.answered(p.cand, msg.contacts, msg.token)
        for v in fresh:
            self._add(v)
        if msg.values:
            if fresh and self.first_value_s is None:
                self.first_value_s = now_s - self.started_s
            if self.hops is None:
                self.hops = p.cand.depth
            # A holder holds at most max_values_per_address values: a larger total is not believed, so a
            # peer cannot keep us paging (each page advances the offset by at least one value).
            total = min(msg.total, req.config.max_values_per_address)
            next_offset = asked + len(msg.values)
            if holder is None:
                self.holders.append(_Holder(p.cand, msg.digest, total, next_offset))
            else:
                holder.next_offset = next_offset
                holder.complete = next_offset >= total
        elif holder is not None:
            holder.complete = True  # its set shrank (expiry) while we paged
        self.step(req, now_s)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        if self.done:
            return
        if p.page_offset != 0:
            self.pages_inflight -= 1
            holder = self._holder(p.cand)
            if holder is not None:
                holder.paging = False
                holder.complete = True  # unreachable: stop counting on it (it does not add to quorum)
                self.holders.remove(holder)
        else:
            self.lookup.failed(p.cand)
        self.step(req, now_s)

    def on_stall(self, req: Requester, p: Pending, now_s: float) -> None:
        if not self.done and p.page_offset == 0:
            self.lookup.stalled(p.cand)
            self.step(req, now_s)
