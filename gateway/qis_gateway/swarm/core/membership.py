"""Joining and leaving the swarm.

- ``JoinOp``: PING the bootstrap addresses (ids unknown, proven by the PONG), look up our own id, then
  refresh up to ``join_refresh_buckets`` buckets farther than the closest neighbour (Kademlia §2.3).
  A rejoin (housekeeping.py, when the table fell below ``rejoin_below``) is the same without the bucket
  refreshes (the regular ones follow) and without a ``JoinDone``.
- ``LeaveOp``: hand every stored address's values to the k closest remaining nodes (PutOps), then send
  LEAVE to every contact, each signed for its recipient (``Requester.signed_leave``), so that nobody
  else can send one in our name.
"""

from __future__ import annotations

from typing import Any

from . import wire
from .events import JoinDone, LeaveDone
from .ops import FindNodeOp
from .put import PutOp
from .refresh import RefreshOp
from .requester import Pending, Requester


class JoinOp:
    __slots__ = ("pings_inflight", "refreshes", "done", "messages", "rejoin")

    def __init__(self, req: Requester, addrs: list[tuple[str, int]], now_s: float, rejoin: bool = False) -> None:
        self.pings_inflight = 0
        self.refreshes = 0
        self.done = False
        self.messages = 0
        self.rejoin = rejoin
        for addr in addrs:
            self.pings_inflight += 1
            req.request(lambda tid, nonce: wire.Ping(tid, req.node_id, nonce), addr, None, now_s, self)
        if not addrs:
            self._lookup_self(req, now_s)

    def _lookup_self(self, req: Requester, now_s: float) -> None:
        if len(req.table) == 0:
            self._finish(req)
            return
        FindNodeOp(req, req.node_id, self._self_done, now_s)

    def _self_done(self, req: Requester, find: FindNodeOp, now_s: float) -> None:
        table = req.table
        if not table.buckets or self.rejoin:
            self._finish(req)
            return
        nearest = min(table.buckets)
        wanted = [i for i in range(255, nearest, -1)][: req.config.join_refresh_buckets]
        self.refreshes = len(wanted)
        if not wanted:
            self._finish(req)
            return
        for i in wanted:
            RefreshOp(req, i, self._refresh_done, now_s)

    def _refresh_done(self, req: Requester, op: RefreshOp, now_s: float) -> None:
        self.refreshes -= 1
        if self.refreshes == 0:
            self._finish(req)

    def _finish(self, req: Requester) -> None:
        if not self.done:
            self.done = True
            if not self.rejoin:
                req.emit(JoinDone(len(req.table)))

    def on_reply(self, req: Requester, p: Pending, msg: Any, now_s: float) -> None:
        self.pings_inflight -= 1
        if self.pings_inflight == 0:
            self._lookup_self(req, now_s)

    def on_timeout(self, req: Requester, p: Pending, now_s: float) -> None:
        self.on_reply(req, p, None, now_s)


class LeaveOp:
    __slots__ = ("puts", "handed")

    def __init__(self, req: Requester, now_s: float) -> None:
        self.puts = 0
        self.handed = 0
        for address in req.store.addresses():
            values = req.store.values(address, req.config.max_values_per_address)
            if values:
                self.puts += 1
                self.handed += len(values)
                PutOp(req, 0, address, values, now_s, report=False, on_done=self._put_done)
        if self.puts == 0:
            self._finish(req, now_s)

    def _put_done(self, req: Requester, op: PutOp, now_s: float) -> None:
        self.puts -= 1
        if self.puts == 0:
            self._finish(req, now_s)

    def _finish(self, req: Requester, now_s: float) -> None:
        for c in req.table.contacts():
            req.send_oneway(lambda tid, c=c: req.signed_leave(c.node_id, tid), c.addr)
        req.emit(LeaveDone(self.handed))
