"""Bench adapter for OpenDHT (PyPI ``opendht``; bench-only, imported lazily by :mod:`.bench_udp`).

How it works: one ``opendht.DhtRunner`` per node (its own C++ threads), IPv4 on 127.0.0.1 only, a private
network id, and the per-IP rate limit switched off (``setRateLimit(-1, -1)``; OpenDHT's default 1,024
req/s per IP stalls any one-IP swarm, see docs/design.md). Keys are the first 20 bytes of our
32-byte address (OpenDHT ids are 160-bit). ``get`` is timed on OpenDHT's own callback threads with
``time.perf_counter``: first value, last expected value, and the done callback (search finished).
Requests per lookup come from ``getNodeMessageStats()`` (incoming ping/find/get/listen/put counts since the
previous read, summed over every surviving node; read once before the lookups to reset), so they include
background maintenance during the lookup phase.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

Address = tuple[str, int]


def _import() -> Any:
    try:
        import opendht
    except ImportError as exc:  # translated at the adapter (style rule 5)
        raise ImportError("OpenDHT is a bench-only peer: pip install opendht (or '.[bench]')") from exc
    return opendht


class OpenDhtAdapter:
    single_value = False

    def __init__(self, opts: dict[str, Any]) -> None:
        self.dht = _import()
        self.opts = opts
        self.runners: list[Any] = []

    def _key(self, address: bytes) -> Any:
        return self.dht.InfoHash(address[:20].hex().encode())

    async def start_nodes(self, count: int, bootstrap: list[Address], workdir: Path) -> list[Address]:
        dht = self.dht
        addrs: list[Address] = []
        for i in range(count):
            cfg = dht.DhtConfig()
            cfg.setNetwork(int(self.opts.get("opendht_network", 4242)))
            cfg.setRateLimit(-1, -1)
            r = dht.DhtRunner()
            r.run(ipv4="127.0.0.1", ipv6="", port=0, config=cfg)
            port = r.getBound().getPort()
            seeds = list(bootstrap) + ([addrs[0]] if addrs and i > 0 else [])
            for host, p in seeds:
                r.bootstrap(host, str(p))
            self.runners.append(r)
            addrs.append(("127.0.0.1", port))
        await asyncio.sleep(0.2)
        return addrs

    async def put(self, idx: int, key: bytes, value: bytes) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def done(ok: bool, _nodes: Any) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(bool(ok)))

        self.runners[idx].put(self._key(key), self.dht.Value(bytes(value)), done)
        return await fut

    async def get(self, idx: int, key: bytes, expected: frozenset[bytes]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        lock = threading.Lock()
        seen: set[bytes] = set()
        times: dict[str, float] = {}
        t0 = time.perf_counter()

        def on_value(v: Any) -> bool:
            now = time.perf_counter()
            with lock:
                times.setdefault("first", now)
                data = bytes(v.data)
                if data in expected and data not in seen:
                    seen.add(data)
                    if len(seen) == len(expected):
                        times.setdefault("last", now)
            return True

        def on_done(ok: bool, _nodes: Any) -> None:
            times["done"] = time.perf_counter()
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        self.runners[idx].get(self._key(key), on_value, on_done)
        await fut
        with lock:
            ok = len(seen) == len(expected)
            return {
                "ok": ok,
                "first_ms": (times["first"] - t0) * 1000 if "first" in times else None,
                "last_ms": (times["last"] - t0) * 1000 if "last" in times else None,
                "done_ms": (times["done"] - t0) * 1000,
                "hops": None,
                "messages": None,
            }

    def messages(self) -> int:
        """Requests these nodes received since the previous call (OpenDHT resets its stats when read)."""
        return sum(sum(r.getNodeMessageStats()) for r in self.runners)

    async def stop(self) -> None:
        for r in self.runners:
            r.join()
        self.runners.clear()
