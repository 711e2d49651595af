"""Operations a node runs over many RPCs: get, put (and republish / hand-off), join, node lookups.

How it works: each op object owns its lookup state and reacts to ``on_reply`` / ``on_timeout`` for the
requests it sent (the node routes replies by transaction id). Ops send through ``node._request`` and
report through ``node._emit``; they never touch time or I/O themselves.

- ``FindNodeOp``: iterative FIND_NODE towards a target; calls ``on_done(node, op, now)`` when finished.
- ``GetOp``: iterative FIND_VALUE. A holder answers with one page of values (as many as fit in a datagram)
  and its total; the op fetches the further pages from that same holder. Done when ``limit`` values are
  in, or ``get_quorum`` holders delivered all their pages and no holder reported more values than were
  collected, or the lookup is exhausted.
- ``PutOp``: FIND_NODE for the address (collecting each answer's STORE token), then STORE to the k
  closest that answered; ``replicas`` = STORED acknowledgements with a non-zero count.
- ``JoinOp``: PING the bootstrap addresses (ids unknown, proven by the PONG), look up our own id, then
  refresh up to ``join_refresh_buckets`` buckets farther than the closest neighbour (Kademlia §2.3).
- ``LeaveOp``: hand every stored address's values to the k closest remaining nodes (PutOps), then send
  LEAVE to every contact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .events import GetDone, JoinDone, LeaveDone, PutDone
from .lookup import Candidate, Lookup

if TYPE_CHECKING:
    from .node import Pending, SwarmNode


class FindNodeOp:
    __slots__ = ("target", "lookup", "on_done", "done", "messages")

    def __init__(self, node: SwarmNode, target: bytes, on_done: Callable[..., None] | None, now_s: float) -> None:
        self.target = target
        t = int.from_bytes(target, "big")
        node.table.mark_used(t, now_s)
        self.lookup = Lookup(t, node.config.k, node.config.alpha, node.table.closest(t, node.config.k),
                             node.table.own_int)
        self.on_done = on_done
        self.done = False
        self.messages = 0
        self.step(node, now_s)

    def step(self, node: SwarmNode, now_s: float) -> None:
        if self.done:
            return
        for cand in self.lookup.next_requests():
            node._request(lambda tid, nonce: wire.FindNode(tid, node.node_id, nonce, self.target),
                          cand.contact.addr, cand.contact.node_id, now_s, self, cand)
        if self.lookup.inflight == 0 and self.lookup.finished():
            self.done = True
            if self.on_done is not None:
                self.on_done(node, self, now_s)

    def on_reply(self, node: SwarmNode, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        if type(msg) is wire.Nodes:
            self.lookup.answered(p.cand, msg.contacts, msg.token)
        else:
            node.counters["drop_wrong_reply"] += 1
            self.lookup.failed(p.cand)
        self.step(node, now_s)

    def on_timeout(self, node: SwarmNode, p: Pending, now_s: float) -> None:
        if self.done:
            return
        self.lookup.failed(p.cand)
        self.step(node, now_s)

    def hops(self) -> int:
        return max((c.depth for c in self.lookup.closest_answered(self.lookup.k)), default=0)


class GetOp:
    __slots__ = ("op_id", "address", "limit", "lookup", "started_s", "values", "first_value_s", "hops",
                 "holders_complete", "max_total", "pages_inflight", "done", "messages")

    def __init__(self, node: SwarmNode, op_id: int, address: bytes, limit: int, now_s: float) -> None:
        self.op_id = op_id
        self.address = address
        self.limit = limit
        t = int.from_bytes(address, "big")
        node.table.mark_used(t, now_s)
        self.lookup = Lookup(t, node.config.k, node.config.alpha, node.table.closest(t, node.config.k),
                             node.table.own_int)
        self.started_s = now_s
        self.values: dict[bytes, None] = dict.fromkeys(node.store.values(address, limit))
        self.first_value_s: float | None = 0.0 if self.values else None
        self.hops: int | None = None
        self.holders_complete = 0
        self.max_total = 0
        self.pages_inflight = 0
        self.done = False
        self.messages = 0
        self.step(node, now_s)

    def _ask(self, node: SwarmNode, cand: Candidate, offset: int, now_s: float) -> None:
        node._request(lambda tid, nonce: wire.FindValue(tid, node.node_id, nonce, self.address, offset),
                      cand.contact.addr, cand.contact.node_id, now_s, self, cand, offset)

    def step(self, node: SwarmNode, now_s: float) -> None:
        if self.done:
            return
        n = len(self.values)
        cfg = node.config
        if n >= self.limit or (self.holders_complete >= cfg.get_quorum and n >= self.max_total):
            self.finish(node, now_s, True)
            return
        for cand in self.lookup.next_requests():
            self._ask(node, cand, 0, now_s)
        if self.lookup.inflight == 0 and self.pages_inflight == 0 and self.lookup.finished():
            answered = any(c.state == 2 for c in self.lookup.by_id.values())
            self.finish(node, now_s, answered or bool(self.values))

    def finish(self, node: SwarmNode, now_s: float, ok: bool) -> None:
        self.done = True
        hops = self.hops if self.hops is not None else max(
            (c.depth for c in self.lookup.closest_answered(self.lookup.k)), default=0)
        node._emit(GetDone(self.op_id, self.address, tuple(self.values)[: self.limit], hops, self.messages,
                           self.first_value_s, now_s - self.started_s, ok))

    def on_reply(self, node: SwarmNode, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        page = p.extra != 0
        if page:
            self.pages_inflight -= 1
        if type(msg) is not wire.Values:
            node.counters["drop_wrong_reply"] += 1
            if not page:
                self.lookup.failed(p.cand)
            self.step(node, now_s)
            return
        if not page:
            self.lookup.answered(p.cand, msg.contacts, msg.token)
        if msg.values:
            fresh = 0
            for v in msg.values:
                if v not in self.values and node._valid(self.address, v):
                    self.values[v] = None
                    fresh += 1
            if fresh and self.first_value_s is None:
                self.first_value_s = now_s - self.started_s
            if self.hops is None:
                self.hops = p.cand.depth
            if msg.total > self.max_total:
                self.max_total = msg.total
            next_offset = msg.offset + len(msg.values)
            if next_offset < msg.total and len(self.values) < self.limit:
                self.pages_inflight += 1
                self._ask(node, p.cand, next_offset, now_s)
            else:
                self.holders_complete += 1
        self.step(node, now_s)

    def on_timeout(self, node: SwarmNode, p: Pending, now_s: float) -> None:
        if self.done:
            return
        if p.extra != 0:
            self.pages_inflight -= 1
        else:
            self.lookup.failed(p.cand)
        self.step(node, now_s)


def _chunks(values: list[bytes], budget: int) -> list[tuple[bytes, ...]]:
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


class PutOp:
    __slots__ = ("op_id", "address", "values", "started_s", "report", "find", "stores_inflight", "replicas",
                 "done", "messages", "on_done", "hops")

    def __init__(self, node: SwarmNode, op_id: int, address: bytes, values: list[bytes], now_s: float,
                 report: bool = True, on_done: Callable[..., None] | None = None) -> None:
        self.op_id = op_id
        self.address = address
        self.values = values
        self.started_s = now_s
        self.report = report
        self.on_done = on_done
        self.stores_inflight = 0
        self.replicas = 0
        self.done = False
        self.messages = 0
        self.hops = 0
        self.find = FindNodeOp(node, address, self._found, now_s)

    def _found(self, node: SwarmNode, find: FindNodeOp, now_s: float) -> None:
        self.messages += find.messages
        self.hops = find.hops()
        budget = node.config.max_datagram - wire.REPLY_OVERHEAD
        chunks = _chunks(self.values, budget)
        for cand in find.lookup.closest_answered(node.config.k):
            token = cand.token
            if not token:
                continue
            counted = False
            for chunk in chunks:
                self.stores_inflight += 1
                node._request(lambda tid, nonce, t=token, ch=chunk: wire.Store(tid, node.node_id, nonce,
                                                                             self.address, t, ch),
                              cand.contact.addr, cand.contact.node_id, now_s, self, cand, 0 if counted else 1)
                counted = True
        self._check(node, now_s)

    def _check(self, node: SwarmNode, now_s: float) -> None:
        if self.stores_inflight == 0 and not self.done and self.find.done:
            self.done = True
            if self.report:
                node._emit(PutDone(self.op_id, self.address, self.replicas, self.hops, self.messages,
                                   now_s - self.started_s))
            if self.on_done is not None:
                self.on_done(node, self, now_s)

    def on_reply(self, node: SwarmNode, p: Pending, msg: Any, now_s: float) -> None:
        if self.done:
            return
        self.stores_inflight -= 1
        if type(msg) is wire.Stored and msg.stored > 0 and p.extra == 1:
            self.replicas += 1
        self._check(node, now_s)

    def on_timeout(self, node: SwarmNode, p: Pending, now_s: float) -> None:
        if self.done:
            return
        self.stores_inflight -= 1
        self._check(node, now_s)


class JoinOp:
    __slots__ = ("pings_inflight", "refreshes", "done", "messages")

    def __init__(self, node: SwarmNode, addrs: list[tuple[str, int]], now_s: float) -> None:
        self.pings_inflight = 0
        self.refreshes = 0
        self.done = False
        self.messages = 0
        for addr in addrs:
            self.pings_inflight += 1
            node._request(lambda tid, nonce: wire.Ping(tid, node.node_id, nonce), addr, None, now_s, self, None)
        if not addrs:
            self._lookup_self(node, now_s)

    def _lookup_self(self, node: SwarmNode, now_s: float) -> None:
        if len(node.table) == 0:
            self._finish(node)
            return
        FindNodeOp(node, node.node_id, self._self_done, now_s)

    def _self_done(self, node: SwarmNode, find: FindNodeOp, now_s: float) -> None:
        table = node.table
        if not table.buckets:
            self._finish(node)
            return
        nearest = min(table.buckets)
        wanted = [i for i in range(255, nearest, -1)][: node.config.join_refresh_buckets]
        self.refreshes = len(wanted)
        if not wanted:
            self._finish(node)
            return
        for i in wanted:
            FindNodeOp(node, node._random_id_in_bucket(i), self._refresh_done, now_s)

    def _refresh_done(self, node: SwarmNode, find: FindNodeOp, now_s: float) -> None:
        self.refreshes -= 1
        if self.refreshes == 0:
            self._finish(node)

    def _finish(self, node: SwarmNode) -> None:
        if not self.done:
            self.done = True
            node._emit(JoinDone(len(node.table)))

    def on_reply(self, node: SwarmNode, p: Pending, msg: Any, now_s: float) -> None:
        self.pings_inflight -= 1
        if self.pings_inflight == 0:
            self._lookup_self(node, now_s)

    def on_timeout(self, node: SwarmNode, p: Pending, now_s: float) -> None:
        self.on_reply(node, p, None, now_s)


class LeaveOp:
    __slots__ = ("puts", "handed")

    def __init__(self, node: SwarmNode, now_s: float) -> None:
        self.puts = 0
        self.handed = 0
        for address in node.store.addresses():
            values = node.store.values(address, node.config.max_values_per_address)
            if values:
                self.puts += 1
                self.handed += len(values)
                PutOp(node, 0, address, values, now_s, report=False, on_done=self._put_done)
        if self.puts == 0:
            self._finish(node, now_s)

    def _put_done(self, node: SwarmNode, op: PutOp, now_s: float) -> None:
        self.puts -= 1
        if self.puts == 0:
            self._finish(node, now_s)

    def _finish(self, node: SwarmNode, now_s: float) -> None:
        for c in node.table.contacts():
            node._send(wire.Leave(node._new_tid(), node.node_id), c.addr)
        node._emit(LeaveDone(self.handed))
