"""In-process simulator: many SwarmNodes on a virtual clock with latency, message loss, churn and crashes.

How it works:
- Every node is a real ``SwarmNode`` (the same core as on UDP). The simulator delivers the nodes'
  outgoing message objects through ``receive_message`` after a random one-way latency (2-20 ms),
  dropping each with probability ``loss``, and fires each node's ``get_timer()`` deadline through
  ``handle_timer`` - a discrete-event loop over one heap. It skips only the byte codec (tested on its
  own in ``wire``) and replaces Ed25519 by ``SimIdentity`` (SHA-256 "signatures" with the same
  interface; ids are still SHA-256 of a 32-byte public key), because 100,000 nodes make millions of
  proofs. Contact objects are shared between nodes (``contact_intern``) to keep tables compact.
- The network is built by joining: node 0 starts alone, every later node ``bootstrap``s through a random
  node that has already joined (real PING / FIND_NODE / PROOF traffic, ids proven), 200 joins run
  concurrently. A join refreshes every bucket farther than the closest neighbour, as real nodes do
  (``RefreshOp``: buckets spread over their range); ``prefill_ideal`` builds the message-free baseline
  tables instead.
- Then ``values`` addresses get ``values_per_address`` values each, put from random nodes; optionally a
  fraction of nodes is crash-stopped (no goodbye, no repair); then ``lookups`` gets from random live
  nodes. With ``churn`` > 0 the lookups run in 10 waves, and before each wave churn/10 of the nodes crash
  and as many fresh nodes join. A lookup succeeds when it returns every value put at its address.
- Speed (the cost is CPython per delivered message): one heap of (time, seq, ...) entries; ``run`` inlines
  the per-node scheduling of outgoing messages and the next timer; ``run_simulation`` keeps the cyclic GC
  off while the swarm joins and freezes the joined swarm afterwards (collections re-walking every routing
  table cost 17% of the wall time at 5,000 nodes). Same seed, same event order: results are bit-identical.
"""

from __future__ import annotations

import gc
import hashlib
import heapq
import logging
import random
import resource
import time
from dataclasses import replace
from typing import Any

from .core.config import SwarmConfig
from .core.events import GetDone, JoinDone, PutDone
from .core.node import SwarmNode
from .core.routing import Contact
from .core.store import MemoryValueStore

log = logging.getLogger(__name__)

Address = tuple[str, int]

SIM_CONFIG = SwarmConfig(rate_limit_per_s=0.0, rtt_cache_size=16, proof_cache_size=16, replacement_cache_size=4,
                         maintenance_interval_s=600.0, refresh_interval_s=3600.0, rpc_timeout_initial_s=0.2)


class SimIdentity:
    """Cheap stand-in for NodeIdentity in the simulator: sign = SHA-256(domain | pk | message)."""

    __slots__ = ("public_key", "node_id")

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.node_id = hashlib.sha256(public_key).digest()

    def sign(self, message: bytes) -> bytes:
        return hashlib.sha256(b"sim-sig" + self.public_key + message).digest()

    @staticmethod
    def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
        return signature == hashlib.sha256(b"sim-sig" + public_key + message).digest()


class Simulator:
    def __init__(self, seed: int, config: SwarmConfig = SIM_CONFIG, loss: float = 0.0,
                 latency_s: tuple[float, float] = (0.002, 0.020)) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.loss = loss
        self.latency_s = latency_s
        self.now = 0.0
        self.nodes: list[SwarmNode] = []
        self.by_addr: dict[Address, SwarmNode] = {}
        self.intern: dict[bytes, Contact] = {}
        self._heap: list[tuple[float, int, Any, Any, Any]] = []
        self._seq = 0
        self._timer_at: dict[int, float] = {}
        self.events: list[tuple[SwarmNode, Any]] = []
        self.delivered = 0
        self.lost = 0

    def add_node(self) -> SwarmNode:
        i = len(self.nodes)
        ident = SimIdentity(self.rng.getrandbits(256).to_bytes(32, "big"))
        node = SwarmNode(ident, self.config, random.Random(self.rng.getrandbits(64)), MemoryValueStore())  # type: ignore[arg-type]
        addr = ("10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), 7000 + (i >> 24))
        node.sim_addr = addr  # type: ignore[attr-defined]
        node.contact_intern = self.intern
        self.intern[ident.node_id] = Contact(ident.node_id, addr)
        self.nodes.append(node)
        self.by_addr[addr] = node
        return node

    def kill(self, node: SwarmNode) -> None:
        """Crash-stop: the node vanishes without a word."""
        self.by_addr.pop(node.sim_addr, None)  # type: ignore[attr-defined]

    def alive(self, node: SwarmNode) -> bool:
        return node.sim_addr in self.by_addr  # type: ignore[attr-defined]

    def flush(self, node: SwarmNode) -> None:
        """Schedule a node's outgoing messages and its next timer; collect its events."""
        self._seq = self._schedule(node, self._seq)

    def _schedule(self, node: SwarmNode, seq: int) -> int:
        # The body of run()'s inner loop does the same inline (the simulator's hottest path); both must
        # draw from self.rng in the same order: loss check, then latency, per message.
        out = node.messages_to_send()
        if out:
            rng = self.rng.random
            loss = self.loss
            lo, hi = self.latency_s
            span = hi - lo
            now = self.now
            src = node.sim_addr  # type: ignore[attr-defined]
            heap = self._heap
            for msg, dst in out:
                if loss and rng() < loss:
                    self.lost += 1
                    continue
                seq += 1
                heapq.heappush(heap, (now + lo + span * rng(), seq, dst, msg, src))
        t = node.get_timer()
        key = id(node)
        if t is not None and self._timer_at.get(key) != t:
            self._timer_at[key] = t
            seq += 1
            heapq.heappush(self._heap, (t, seq, None, node, None))
        ev = node.next_event()
        while ev is not None:
            self.events.append((node, ev))
            ev = node.next_event()
        return seq

    def run(self, until_s: float | None = None, stop: Any = None, until_event: bool = False) -> None:
        """Deliver messages and fire timers in time order until the heap is empty, ``until_s`` is reached,
        ``stop()`` is true or (``until_event``) a node has emitted an event."""
        heap = self._heap
        by_addr = self.by_addr
        timer_at = self._timer_at
        events = self.events
        pop = heapq.heappop
        push = heapq.heappush
        rng = self.rng.random
        lo, hi = self.latency_s
        span = hi - lo
        seq = self._seq
        delivered = 0
        try:
            while heap:
                if stop is not None and stop():
                    return
                if until_event and events:
                    return
                if until_s is not None and heap[0][0] > until_s:
                    self.now = until_s
                    return
                t, _, dst, payload, src = pop(heap)
                self.now = t
                if dst is None:
                    node = payload
                    if timer_at.get(id(node)) != t or node.sim_addr not in by_addr:
                        continue
                    del timer_at[id(node)]
                    node.handle_timer(t)
                else:
                    node = by_addr.get(dst)
                    if node is None:
                        continue
                    delivered += 1
                    node.receive_message(payload, src, t)
                # inline _schedule(node): outgoing messages, next timer, events
                out = node.messages_to_send()
                if out:
                    loss = self.loss
                    me = node.sim_addr
                    for msg, to in out:
                        if loss and rng() < loss:
                            self.lost += 1
                            continue
                        seq += 1
                        push(heap, (t + lo + span * rng(), seq, to, msg, me))
                nt = node.get_timer()
                if nt is not None:
                    key = id(node)
                    if timer_at.get(key) != nt:
                        timer_at[key] = nt
                        seq += 1
                        push(heap, (nt, seq, None, node, None))
                ev = node.next_event()
                while ev is not None:
                    events.append((node, ev))
                    ev = node.next_event()
        finally:
            self._seq = seq
            self.delivered += delivered

    def take_events(self) -> list[tuple[SwarmNode, Any]]:
        out, self.events = self.events, []
        return out

    def join_all(self, count: int, window: int = 200) -> dict[str, float]:
        """Add ``count`` nodes, each joining through a random already-joined node."""
        joined = [n for n in self.nodes if self.alive(n)]
        first_index = len(self.nodes)
        if not joined:
            first = self.add_node()
            joined.append(first)
            count -= 1
        todo = [self.add_node() for _ in range(count)]
        sent_before = sum(n.counters["sent"] for n in self.nodes[first_index:])
        started = 0
        done = 0
        inflight = 0
        report_every = max(count // 10, 1000)  # progress on long runs (100k nodes join for many minutes)
        wall0 = time.perf_counter()
        while done < count:
            while inflight < window and started < count:
                node = todo[started]
                started += 1
                inflight += 1
                via = joined[self.rng.randrange(len(joined))]
                node.bootstrap([via.sim_addr], self.now)  # type: ignore[attr-defined]
                self.flush(node)
            self.run(until_event=True)
            for node, ev in self.take_events():
                if isinstance(ev, JoinDone):
                    inflight -= 1
                    done += 1
                    joined.append(node)
                    if done % report_every == 0:
                        wall = time.perf_counter() - wall0
                        log.info("joined %d of %d nodes in %.0f s (%d datagrams delivered so far, about %.0f s to go)",
                                 done, count, wall, self.delivered, wall * (count - done) / done)
            if not self._heap and inflight:
                raise RuntimeError("simulation stalled with %d joins in flight" % inflight)
        sent = sum(n.counters["sent"] for n in self.nodes[first_index:]) - sent_before
        return {"join_messages_per_node": sent / max(count, 1)}

    def prefill_ideal(self, count: int) -> None:
        """Baseline only (not the protocol): add ``count`` nodes whose tables hold k random nodes from every
        bucket range, as a fully converged network would, without any messages."""
        import bisect

        for _ in range(count):
            self.add_node()
        ids = sorted((n.table.own_int, n) for n in self.nodes)
        keys = [i for i, _ in ids]
        k = self.config.k
        for own, node in ids:
            for b in range(255, -1, -1):
                lo = ((own >> b) ^ 1) << b  # bucket b: ids that first differ from ours at bit b
                first, end = bisect.bisect_left(keys, lo), bisect.bisect_left(keys, lo + (1 << b))
                picks = range(first, end) if end - first <= k else self.rng.sample(range(first, end), k)
                for j in picks:
                    node.table.add_proven(self.intern[ids[j][1].node_id], 0.0)
                block = (own >> b) << b  # ids sharing our prefix above bit b: lower buckets live here
                if bisect.bisect_left(keys, block + (1 << b)) - bisect.bisect_left(keys, block) <= 1:
                    break

    def run_ops(self, starts: list[Any], window: int = 100) -> list[Any]:
        """Run ``start(now) -> (node, op_id)`` callables with ``window`` in flight; returns their events."""
        results: dict[tuple[int, int], Any] = {}
        pending: dict[tuple[int, int], int] = {}
        i = 0
        out: list[Any] = [None] * len(starts)
        while i < len(starts) or pending:
            while i < len(starts) and len(pending) < window:
                node, op_id = starts[i](self.now)
                pending[(id(node), op_id)] = i
                self.flush(node)
                i += 1
            self.run(until_event=True)
            for node, ev in self.take_events():
                if isinstance(ev, (GetDone, PutDone)):
                    key = (id(node), ev.op_id)
                    if key in pending:
                        out[pending.pop(key)] = ev
                        results[key] = ev
            if not self._heap and pending:
                raise RuntimeError("simulation stalled with %d operations in flight" % len(pending))
        return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _summary(gets: list[Any], expected: dict[bytes, set[bytes]]) -> dict[str, Any]:
    ok = [ev for ev in gets if ev.ok and set(ev.values) >= expected[ev.address]]
    hops = [ev.hops for ev in gets]
    msgs = [ev.messages for ev in gets]
    elapsed = [ev.elapsed_s for ev in gets]
    return {
        "lookups": len(gets),
        "success_rate": len(ok) / max(len(gets), 1),
        "hops": {"p50": _pct(hops, 0.5), "p90": _pct(hops, 0.9), "p99": _pct(hops, 0.99), "max": max(hops, default=0),
                 "histogram": {str(h): hops.count(h) for h in sorted(set(hops))}},
        "messages": {"p50": _pct(msgs, 0.5), "p99": _pct(msgs, 0.99), "max": max(msgs, default=0)},
        "lookup_virtual_ms": {"p50": round(1000 * _pct(elapsed, 0.5), 2), "p99": round(1000 * _pct(elapsed, 0.99), 2)},
    }


def run_simulation(nodes: int, lookups: int, seed: int, churn: float = 0.0, loss: float = 0.0,
                   kill_after_store: float = 0.0, values: int | None = None, values_per_address: int = 3,
                   value_bytes: int = 300, config: SwarmConfig | None = None, tables: str = "join",
                   phases: tuple[tuple[str, float], ...] = ()) -> dict[str, Any]:
    """Build a ``nodes``-node swarm by joining (``tables="ideal"``: pre-filled baseline), store values,
    then run ``lookups`` gets; returns the figures as a JSON-ready dict.

    ``phases``: further measurements on the same swarm afterwards, in order, e.g.
    ``(("loss", 0.1), ("kill", 0.3))`` = the same number of gets with 10% message loss, then with loss
    back at 0 and 30% of the nodes crash-stopped (values stored before, no repair)."""
    # The cyclic GC is off while the swarm joins (joins make no reference cycles): millions of
    # short-lived messages and candidates triggered collections that re-walked every routing table (17%
    # of the wall time at 5,000 nodes, more at 100,000). After the join the swarm is frozen (no collection
    # walks it again) and the GC runs for the puts and gets (a PutOp and its FindNodeOp form a cycle).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _simulate(nodes, lookups, seed, churn, loss, kill_after_store, values, values_per_address,
                         value_bytes, config, tables, phases)
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
        else:
            gc.disable()


def _simulate(nodes: int, lookups: int, seed: int, churn: float, loss: float, kill_after_store: float,
              values: int | None, values_per_address: int, value_bytes: int, config: SwarmConfig | None,
              tables: str, phases: tuple[tuple[str, float], ...]) -> dict[str, Any]:
    wall0 = time.perf_counter()
    cfg = config or SIM_CONFIG
    sim = Simulator(seed, cfg, loss=0.0)
    if tables == "ideal":
        sim.prefill_ideal(nodes)
        join = {"join_messages_per_node": 0.0}
    else:
        join = sim.join_all(nodes)
    gc.freeze()
    gc.enable()
    wall_join = time.perf_counter() - wall0
    rng = random.Random(seed ^ 0x5EED)
    n_addr = values if values is not None else max(1, min(lookups, 1000))
    expected: dict[bytes, set[bytes]] = {}
    puts = []
    for _ in range(n_addr):
        address = rng.getrandbits(256).to_bytes(32, "big")
        expected[address] = set()
        for _ in range(values_per_address):
            value = rng.getrandbits(value_bytes * 8).to_bytes(value_bytes, "big")
            expected[address].add(value)
            origin = sim.nodes[rng.randrange(len(sim.nodes))]
            puts.append(lambda now, o=origin, a=address, v=value: (o, o.start_put(a, v, now)))
    sim.loss = loss
    put_events = sim.run_ops(puts)
    replicas = [ev.replicas for ev in put_events]
    if kill_after_store > 0:
        for node in rng.sample(sim.nodes, int(kill_after_store * len(sim.nodes))):
            sim.kill(node)
    addresses = list(expected)

    def gets_from_live(count: int) -> list[Any]:
        live = [n for n in sim.nodes if sim.alive(n)]
        batch = []
        for _ in range(count):
            node = live[rng.randrange(len(live))]
            address = addresses[rng.randrange(len(addresses))]
            batch.append(lambda now, o=node, a=address: (o, o.start_get(a, 1000, now)))
        return sim.run_ops(batch)

    waves = 10 if churn > 0 else 1
    gets: list[Any] = []
    for w in range(waves):
        if churn > 0:
            live = [n for n in sim.nodes if sim.alive(n)]
            for node in rng.sample(live, int(churn * nodes / waves)):
                sim.kill(node)
            sim.loss = 0.0
            sim.join_all(int(churn * nodes / waves))
            sim.loss = loss
        gets.extend(gets_from_live(lookups // waves + (1 if w < lookups % waves else 0)))
    table_sizes = [len(n.table) for n in sim.nodes if sim.alive(n)]
    result: dict[str, Any] = {
        "nodes": nodes,
        "seed": seed,
        "churn": churn,
        "loss": loss,
        "kill_after_store": kill_after_store,
        "addresses": n_addr,
        "values_per_address": values_per_address,
        **_summary(gets, expected),
        "put_replicas": {"p50": _pct(replicas, 0.5), "min": min(replicas, default=0)},
        "join_messages_per_node": round(join["join_messages_per_node"], 1),
        "table_size": {"mean": round(sum(table_sizes) / max(len(table_sizes), 1), 1),
                       "min": min(table_sizes, default=0)},
        "seconds_join": round(wall_join, 2),
    }
    result["phases"] = {}
    for kind, amount in phases:
        t0 = time.perf_counter()
        if kind == "loss":
            sim.loss = amount
        elif kind == "kill":
            sim.loss = 0.0
            live = [n for n in sim.nodes if sim.alive(n)]
            for node in rng.sample(live, int(amount * len(live))):
                sim.kill(node)
        else:
            raise ValueError("unknown phase %r (use 'loss' or 'kill')" % kind)
        summary = _summary(gets_from_live(lookups), expected)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        result["phases"]["%s%g" % (kind, amount)] = summary
    result.update({
        "delivered_messages": sim.delivered,
        "lost_messages": sim.lost,
        "internal_errors": sum(n.counters["drop_internal_error"] for n in sim.nodes),
        "seconds": round(time.perf_counter() - wall0, 2),
        # wall time per delivered message (the simulator's cost figure; the machine is shared, so an upper bound)
        "wall_us_per_delivered": round(1e6 * (time.perf_counter() - wall0) / max(sim.delivered, 1), 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tables": tables,
        "config": {"k": cfg.k, "alpha": cfg.alpha, "join_refresh_buckets": cfg.join_refresh_buckets,
                   "get_quorum": cfg.get_quorum},
    })
    return result


def config_with(**changes: Any) -> SwarmConfig:
    return replace(SIM_CONFIG, **changes)
