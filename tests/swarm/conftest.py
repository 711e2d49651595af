"""Swarm test helpers: an in-memory network of real SwarmNodes exchanging encoded datagrams on a
virtual clock (h11's ConnectionPair idea, for many nodes)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

import pytest
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.core.identity import NodeIdentity
from qis_gateway.swarm.core.node import SwarmNode
from qis_gateway.swarm.core.store import MemoryValueStore

Address = tuple[str, int]
TEST_CONFIG = SwarmConfig(rate_limit_per_s=0.0, maintenance_interval_s=60.0)


class MemNet:
    """Nodes at 127.0.0.1:<port>; datagrams (bytes) delivered after ``latency_s``; ``drop`` filters."""

    def __init__(self, seed: int = 1, latency_s: float = 0.001) -> None:
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        self.now = 0.0
        self.nodes: dict[Address, SwarmNode] = {}
        self.dead: set[Address] = set()
        self.queue: list[tuple[float, int, Address, bytes, Address]] = []
        self.seq = 0
        self.events: list[tuple[SwarmNode, Any]] = []
        self.sent: list[tuple[Address, bytes, Address]] = []
        self.drop: Callable[[Address, bytes, Address], bool] | None = None

    def add(self, config: SwarmConfig = TEST_CONFIG, validator: Any = None, node_cls: type = SwarmNode,
            identity: Any = None) -> SwarmNode:
        port = 20000 + len(self.nodes)
        ident = identity or NodeIdentity.generate(self.rng.getrandbits(256).to_bytes(32, "big"))
        node = node_cls(ident, config, random.Random(self.rng.getrandbits(64)), MemoryValueStore(), validator)
        node.test_addr = ("127.0.0.1", port)
        self.nodes[node.test_addr] = node
        return node

    def flush(self, node: SwarmNode) -> None:
        for data, dst in node.datagrams_to_send():
            assert len(data) <= 1400
            self.sent.append((node.test_addr, data, dst))
            if self.drop is not None and self.drop(node.test_addr, data, dst):
                continue
            self.seq += 1
            heapq.heappush(self.queue, (self.now + self.latency_s, self.seq, dst, data, node.test_addr))
        ev = node.next_event()
        while ev is not None:
            self.events.append((node, ev))
            ev = node.next_event()

    def run(self, until: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Deliver datagrams and fire timers until nothing is due before ``until`` (or ``stop()``)."""
        end = self.now + 5.0 if until is None else until
        while True:
            for node in self.nodes.values():
                self.flush(node)
            if stop is not None and stop():
                return
            next_msg = self.queue[0][0] if self.queue else None
            timers = [(node.get_timer(), addr) for addr, node in self.nodes.items() if addr not in self.dead]
            timers = [(t, a) for t, a in timers if t is not None]
            next_timer = min(timers) if timers else None
            candidates = [t for t in (next_msg, next_timer[0] if next_timer else None) if t is not None]
            if not candidates or min(candidates) > end:
                self.now = end
                return
            if next_msg is not None and (next_timer is None or next_msg <= next_timer[0]):
                t, _, dst, data, src = heapq.heappop(self.queue)
                self.now = t
                if dst in self.nodes and dst not in self.dead:
                    self.nodes[dst].receive_datagram(data, src, t)
            else:
                assert next_timer is not None
                self.now = next_timer[0]
                self.nodes[next_timer[1]].handle_timer(self.now)

    def take(self, kind: type) -> list[tuple[SwarmNode, Any]]:
        out = [(n, e) for n, e in self.events if isinstance(e, kind)]
        self.events = [(n, e) for n, e in self.events if not isinstance(e, kind)]
        return out

    def wait_for(self, kind: type, count: int = 1, limit_s: float = 10.0) -> list[tuple[SwarmNode, Any]]:
        self.run(until=self.now + limit_s,
                 stop=lambda: sum(isinstance(e, kind) for _, e in self.events) >= count)
        got = self.take(kind)
        assert len(got) >= count, "expected %d %s events, got %d" % (count, kind.__name__, len(got))
        return got

    def build(self, n: int, config: SwarmConfig = TEST_CONFIG, validator: Any = None) -> list[SwarmNode]:
        from qis_gateway.swarm.core.events import JoinDone

        first = self.add(config, validator)
        nodes = [first]
        for _ in range(n - 1):
            node = self.add(config, validator)
            node.bootstrap([nodes[self.rng.randrange(len(nodes))].test_addr], self.now)
            self.wait_for(JoinDone)
            nodes.append(node)
        return nodes


@pytest.fixture
def memnet() -> MemNet:
    return MemNet()
