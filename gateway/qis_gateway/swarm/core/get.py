"""``GetOp``: iterative FIND_VALUE, paging each holder with a window of pages in flight.

How it works: the lookup asks the closest nodes for the address (offset 0). A holder answers with one
page of values (as many as fit in a datagram), its total and the digest of its whole set. A holder is
complete once the digest of the values we collected equals its digest, or once we paged it to the end.
The op pages one incomplete holder at a time (identical replicas cost one request each), with up to
``get_page_window`` pages of it in flight: the offsets are guessed from its first page's length (values
at one address are packets of about one size). A page that comes back shorter than guessed leaves a gap,
asked for next; a page past the holder's end (its set shrank) ends the holder there. Done when ``limit``
values are in, or ``get_quorum`` holders are complete, or the lookup is exhausted. Paging one page per
round trip made an address of 256 packets (~50 pages) cost ~50 round trips; a window of 8 costs ~7.

Hostile holders (issue 18 point 2): a page must start at the offset we asked for, a claimed total counts
for at most ``max_values_per_address`` values (each page advances by at least one value, so at most that
many pages per holder), and a peer whose answer holds an invalid value (checked until the first one) or
the wrong offset is dropped from the lookup (no holder, its contacts unused, its pages still in flight
ignored) and demoted in the routing table (one failure).
"""

from __future__ import annotations

from typing import Any

from . import wire
from .events import GetDone
from .lookup import ANSWERED, Candidate, Lookup
from .requester import Pending, Requester


class _Holder:
    __slots__ = ("cand", "digest", "total", "page_len", "next_offset", "inflight", "gaps", "complete")

    def __init__(self, cand: Candidate, digest: bytes, total: int, page_len: int) -> None:
        self.cand = cand
        self.digest = digest
        self.total = total  # already capped at max_values_per_address
        self.page_len = max(1, page_len)  # the first page's length: the guess for every further page
        self.next_offset = page_len  # the next offset not yet asked for
        self.inflight: set[int] = set()  # offsets asked for, not yet answered
        self.gaps: list[int] = []  # offsets to ask for again (a page came back shorter than guessed)
        self.complete = page_len >= total

    def paging(self) -> bool:
        return bool(self.inflight)

    def next_page(self) -> int | None:
        """The next offset to ask for, or None when every value is asked for (or the holder is done)."""
        if self.complete:
            return None
        while self.gaps:
            offset = self.gaps.pop()
            if offset < self.total:
                return offset
        if self.next_offset < self.total:
            offset = self.next_offset
            self.next_offset += self.page_len
            return offset
        return None

    def answered(self, offset: int, count: int) -> None:
        """A page asked at `offset` brought `count` values."""
        self.inflight.discard(offset)
        if self.complete:  # by digest, or given up on: stays so
            return
        if count == 0:
            self.total = min(self.total, offset)  # its set shrank (expiry) while we paged
        else:
            end = offset + count
            if count < self.page_len and end < self.total:
                self.gaps.append(end)
        self.complete = not self.inflight and not self.gaps and self.next_offset >= self.total


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
        """Holders whose digest equals our collection's are complete; page one holder at a time, and only
        one whose set still differs from ours, a window of pages at once."""
        if self.done:
            return
        mine = self.digest.to_bytes(8, "big")
        complete = 0
        current: _Holder | None = None
        for h in self.holders:
            if not h.complete and h.digest == mine:
                h.complete = True
            complete += h.complete
            if current is None and h.paging():
                current = h
        if len(self.values) >= self.limit or complete >= req.config.get_quorum:
            self.finish(req, now_s, True)
            return
        if current is None:
            current = next((h for h in self.holders if not h.complete), None)
        if current is not None:
            self._page(req, current, now_s)
        if len(self.holders) < req.config.get_quorum:  # enough holders known: only page them now
            for cand in self.lookup.next_requests():
                self._ask(req, cand, 0, now_s)
        if self.lookup.inflight == 0 and self.pages_inflight == 0 and (
                self.lookup.finished() or len(self.holders) >= req.config.get_quorum):
            self.finish(req, now_s, self._reached_someone())

    def _page(self, req: Requester, h: _Holder, now_s: float) -> None:
        """Fill `h`'s window of pages in flight, never asking for more values than `limit` still needs."""
        while len(h.inflight) < req.config.get_page_window and (
                len(self.values) + len(h.inflight) * h.page_len < self.limit):
            offset = h.next_page()
            if offset is None:
                break
            h.inflight.add(offset)
            self.pages_inflight += 1
            self._ask(req, h.cand, offset, now_s)

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
        holder = None
        if page:
            self.pages_inflight -= 1
            holder = self._holder(p.cand)
            if holder is None:  # dropped or given up on while this page was in flight
                self.step(req, now_s)
                return
        if type(msg) is not wire.Values:
            req.counters["drop_wrong_reply"] += 1
            if holder is not None:
                holder.inflight.discard(asked)
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
        if fresh and self.first_value_s is None:
            self.first_value_s = now_s - self.started_s
        if msg.values and self.hops is None:
            self.hops = p.cand.depth
        if holder is not None:
            holder.answered(asked, len(msg.values))
        elif msg.values:
            # A holder holds at most max_values_per_address values: a larger total is not believed, so a
            # peer cannot keep us paging (each page advances the offset by at least one value).
            total = min(msg.total, req.config.max_values_per_address)
            self.holders.append(_Holder(p.cand, msg.digest, total, len(msg.values)))
        self.step(req, now_s)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        if self.done:
            return
        if p.page_offset != 0:
            self.pages_inflight -= 1
            holder = self._holder(p.cand)
            if holder is not None:  # unreachable: stop counting on it (it does not add to quorum)
                self.holders.remove(holder)
        else:
            self.lookup.failed(p.cand)
        self.step(req, now_s)

    def on_stall(self, req: Requester, p: Pending, now_s: float) -> None:
        if not self.done and p.page_offset == 0:
            self.lookup.stalled(p.cand)
            self.step(req, now_s)
