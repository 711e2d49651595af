"""Bench adapter for the PyPI ``kademlia`` package (bmuller; bench-only, imported lazily by :mod:`.bench_udp`).

How it works: one ``kademlia.network.Server(ksize=20, alpha=3)`` per node on 127.0.0.1. The package keeps
ONE value per key, so the harness stores an address's packets as one concatenated value (``single_value``),
under the first 20 bytes of our address (its ids are 160-bit; ``set_digest`` skips its SHA-1). Gets always
go to the network (the package's ``Server.get`` answers from local storage when it can, which would hide
lookup cost): the adapter runs the package's own ``ValueSpiderCrawl``, counting its rounds (hops) and
FIND_VALUE requests. Its lookups include the package's "store at the nearest node without the value"
step, as ``Server.get`` does. rpcudp's 5 s reply timeout is the package default and left unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

Address = tuple[str, int]


def _import() -> tuple[Any, Any, Any]:
    try:
        from kademlia.crawling import ValueSpiderCrawl
        from kademlia.network import Server
        from kademlia.node import Node
    except ImportError as exc:  # translated at the adapter (style rule 5)
        raise ImportError("kademlia is a bench-only peer: pip install kademlia (or '.[bench]')") from exc
    return Server, Node, ValueSpiderCrawl


class KademliaAdapter:
    single_value = True

    def __init__(self, opts: dict[str, Any]) -> None:
        self.Server, self.Node, crawl = _import()
        self.servers: list[Any] = []
        self.requests = 0

        class CountingCrawl(crawl):  # type: ignore[misc,valid-type]
            rounds = 0

            async def _find(self, rpcmethod: Any) -> Any:
                self.rounds += 1
                return await super()._find(rpcmethod)

        self.Crawl = CountingCrawl

    async def start_nodes(self, count: int, bootstrap: list[Address], workdir: Path) -> list[Address]:
        addrs: list[Address] = []
        for i in range(count):
            s = self.Server(ksize=20, alpha=3)
            await s.listen(0, interface="127.0.0.1")
            port = s.transport.get_extra_info("sockname")[1]
            self._count_requests(s)
            seeds = list(bootstrap) + ([addrs[0]] if i > 0 else [])
            if seeds:
                await s.bootstrap(seeds)
            self.servers.append(s)
            addrs.append(("127.0.0.1", port))
        return addrs

    def _count_requests(self, server: Any) -> None:
        proto = server.protocol
        original = proto.call_find_value

        async def counted(node_to_ask: Any, node_to_find: Any) -> Any:
            self.requests += 1
            return await original(node_to_ask, node_to_find)

        proto.call_find_value = counted

    async def put(self, idx: int, key: bytes, value: bytes) -> bool:
        return bool(await self.servers[idx].set_digest(bytes(key[:20]), bytes(value)))

    async def get(self, idx: int, key: bytes, expected: frozenset[bytes]) -> dict[str, Any]:
        s = self.servers[idx]
        before = self.requests
        t0 = time.perf_counter()
        target = self.Node(bytes(key[:20]))
        nearest = s.protocol.router.find_neighbors(target)
        value = None
        rounds = 0
        if nearest:
            crawl = self.Crawl(s.protocol, target, nearest, s.ksize, s.alpha)
            value = await crawl.find()
            rounds = crawl.rounds
        done_ms = (time.perf_counter() - t0) * 1000
        ok = value is not None and bytes(value) in expected
        return {"ok": ok, "first_ms": done_ms if value is not None else None, "last_ms": done_ms if ok else None,
                "done_ms": done_ms, "hops": rounds, "messages": self.requests - before}

    def messages(self) -> None:
        return None

    async def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self.servers.clear()
