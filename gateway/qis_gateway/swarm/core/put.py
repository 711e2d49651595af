"""``PutOp``: store values at one address on the k closest nodes, in pages, paced per holder.

How it works: a FIND_NODE for the address (collecting each answer's STORE token; it gets the first half
of the put's deadline), then the values are cut into pages (as many as fit in a datagram) and sent to
each of the k closest nodes that answered, at most ``PAGE_WINDOW`` pages in flight per holder: the next
page goes out when one is answered (self-clocking). Blasting every page of 32 puts at once overflowed
the holders' socket buffers and rate limiters; the losses made puts fail and the outbox retry them whole.

A holder counts as a *replica* only once it acknowledged every page with all of that page's values kept
(its STORED count is the values it holds after its storage policy; a page it kept only partly, or any
other answer, makes it no replica and nothing more is sent to it). So ``replicas`` is the number of
nodes known to hold every value of the put.

A page that times out (the RPC layer has re-sent it once already) is sent again as a new request: at
most ``PAGE_RESENDS`` times, or without limit once the holder answered BUSY (it is alive and shedding
load; each attempt waits the RPC timeouts, so the retries are paced), until the op's deadline. At the
deadline the put reports the replicas complete by then and sends nothing more.

Pending records carry the page's index in ``page_offset`` (a STORE has no offset of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import wire
from .events import PutDone
from .lookup import Candidate
from .ops import FindNodeOp
from .requester import Pending, Requester

PAGE_WINDOW = 4  # pages in flight per holder
PAGE_RESENDS = 2  # new requests for a page that timed out (BUSY answers do not count)


def chunks(values: list[bytes], budget: int) -> list[tuple[bytes, ...]]:
    """``values`` in pages of at most ``budget`` encoded bytes (a value larger than that alone)."""
    out: list[tuple[bytes, ...]] = []
    cur: list[bytes] = []
    used = 0
    for v in values:
        size = wire.value_size(v)
        if cur and used + size > budget:
            out.append(tuple(cur))
            cur, used = [], 0
        cur.append(v)
        used += size
    if cur:
        out.append(tuple(cur))
    return out


class _Holder:
    """One of the k closest nodes: its token, the next page to send, pages in flight and acknowledged."""

    __slots__ = ("cand", "token", "next_page", "inflight", "kept", "resends", "failed", "shedding")

    def __init__(self, cand: Candidate) -> None:
        self.cand = cand
        self.token = cand.token
        self.next_page = 0
        self.inflight = 0
        self.kept = 0  # pages acknowledged with every value kept
        self.resends: dict[int, int] = {}  # page index -> new requests sent for it
        self.failed = False
        self.shedding = False  # it answered BUSY: alive, its limiter drops what we send too fast


class PutOp:
    __slots__ = ("op_id", "address", "values", "started_s", "report", "find", "pages", "holders", "replicas",
                 "done", "messages", "on_done", "hops")

    def __init__(self, req: Requester, op_id: int, address: bytes, values: list[bytes], now_s: float,
                 report: bool = True, on_done: Callable[..., None] | None = None) -> None:
        self.op_id = op_id
        self.address = address
        self.values = values
        self.started_s = now_s
        self.report = report
        self.on_done = on_done
        self.pages: list[tuple[bytes, ...]] = []
        self.holders: dict[Candidate, _Holder] = {}
        self.replicas = 0
        self.done = False
        self.messages = 0
        self.hops = 0
        req.add_deadline(now_s + req.config.op_deadline_s, self)
        # With an empty routing table the lookup ends inside its constructor and calls _found at once.
        self.find: FindNodeOp | None = None
        self.find = FindNodeOp(req, address, self._found, now_s, now_s + req.config.op_deadline_s / 2, reask=1)

    def _found(self, req: Requester, find: FindNodeOp, now_s: float) -> None:
        if self.done:
            return
        self.messages += find.messages
        self.hops = find.hops()
        self.pages = chunks(self.values, req.config.max_datagram - wire.REPLY_OVERHEAD)
        for cand in find.lookup.closest_answered(req.config.k):
            if cand.token:
                h = self.holders[cand] = _Holder(cand)
                self._fill(req, h, now_s)
        self._check(req, now_s)

    def _send(self, req: Requester, h: _Holder, page: int, now_s: float) -> None:
        h.inflight += 1
        address, token, values = self.address, h.token, self.pages[page]
        req.request(lambda tid, nonce: wire.Store(tid, req.node_id, nonce, address, token, values),
                    h.cand.contact.addr, h.cand.contact.node_id, now_s, self, cand=h.cand, page_offset=page)

    def _fill(self, req: Requester, h: _Holder, now_s: float) -> None:
        while not h.failed and h.inflight < PAGE_WINDOW and h.next_page < len(self.pages):
            h.next_page += 1
            self._send(req, h, h.next_page - 1, now_s)

    def expire(self, req: Requester, now_s: float) -> None:
        """The deadline passed: report the replicas complete so far; the lookup stops too."""
        if self.find is not None and not self.find.done:
            self.find.cancel()  # ends without calling back: no STORE after the deadline
            self.messages += self.find.messages
        for h in self.holders.values():
            h.inflight = 0
            h.failed = True
        self._check(req, now_s)

    def _check(self, req: Requester, now_s: float) -> None:
        if self.done or (self.find is not None and not self.find.done):
            return
        if any(h.inflight for h in self.holders.values()):
            return
        self.done = True
        if self.report:
            req.emit(PutDone(self.op_id, self.address, self.replicas, self.hops, self.messages,
                             now_s - self.started_s))
        if self.on_done is not None:
            self.on_done(req, self, now_s)

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        h = self.holders.get(p.cand)  # type: ignore[arg-type]
        if self.done or h is None:
            return
        h.inflight -= 1
        if h.failed:  # no replica any more: its answers only let the put finish
            self._check(req, now_s)
            return
        page = self.pages[p.page_offset]
        if type(msg) is wire.Stored and msg.stored >= len(page):
            h.kept += 1
            if h.kept == len(self.pages):
                self.replicas += 1
            self._fill(req, h, now_s)
        else:  # a page refused (storage policy) or a wrong answer: not a replica; send it nothing more
            h.failed = True
        self._check(req, now_s)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        h = self.holders.get(p.cand)  # type: ignore[arg-type]
        if self.done or h is None:
            return
        h.inflight -= 1
        if h.failed:
            self._check(req, now_s)
            return
        page = p.page_offset
        tries = h.resends.get(page, 0)
        h.shedding = h.shedding or p.busy
        if h.shedding or tries < PAGE_RESENDS:
            # Send it again (a new request with its own retry): a holder shedding load (BUSY: its limiter
            # answers one refused datagram per interval, the others just vanish) or one that lost the
            # datagram would otherwise lack these values until the next republish.
            if not h.shedding:
                h.resends[page] = tries + 1
            self._send(req, h, page, now_s)
            return
        h.failed = True
        self._check(req, now_s)
