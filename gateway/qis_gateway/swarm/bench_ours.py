"""Bench adapter for our swarm: ``UdpSwarm`` nodes (real UDP, SQLite stores) in one worker process.

How it works: each node gets its own data directory under the worker's temp dir. The per-source rate limit
is keyed by (ip, port) (``rate_limit_key="addr"``): every bench node shares 127.0.0.1, and a per-IP limit
would throttle the whole swarm as one source (OpenDHT's trap, docs/design.md). Timings come from
the core's ``GetDone`` (driver clock = ``loop.time()``): ``first_ms`` = first value, ``done_ms`` =
lookup finished (the last value arrives at or before it, so ``last_ms`` is reported as ``done_ms``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

from .api import SwarmUnavailable, UdpSwarm

log = logging.getLogger(__name__)

Address = tuple[str, int]


class OursAdapter:
    single_value = False

    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts
        self.nodes: list[UdpSwarm] = []
        self.put_exceptions = 0

    def _config(self) -> Any:
        from .config import SwarmConfig

        overrides = {"rate_limit_key": "addr"}
        overrides.update(self.opts.get("config", {}))
        names = {f.name for f in dataclasses.fields(SwarmConfig)}
        return SwarmConfig(**{k: v for k, v in overrides.items() if k in names})

    async def start_nodes(self, count: int, bootstrap: list[Address], workdir: Path) -> list[Address]:
        config = self._config()
        addrs: list[Address] = []
        for i in range(count):
            seeds = list(bootstrap) + addrs[-2:]
            node = UdpSwarm(("127.0.0.1", 0), workdir / ("n%d" % i), seeds, config=config, join_timeout_s=10.0)
            await node.start()
            self.nodes.append(node)
            addrs.append(node.address)
        return addrs

    async def put(self, idx: int, key: bytes, value: bytes) -> bool:
        try:
            return await self.nodes[idx].put(key, value) > 0
        except SwarmUnavailable:
            return False
        except Exception:  # a core bug must not end the whole run; counted and reported
            log.exception("put raised")
            self.put_exceptions += 1
            return False

    async def get(self, idx: int, key: bytes, expected: frozenset[bytes]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            r = await self.nodes[idx].get(key, limit=max(200, len(expected)))
        except SwarmUnavailable:
            return {"ok": False, "first_ms": None, "last_ms": None, "done_ms": (loop.time() - t0) * 1000,
                    "hops": None, "messages": None}
        ok = expected.issubset(r.values)
        return {"ok": ok, "first_ms": r.first_ms, "last_ms": r.elapsed_ms if ok else None,
                "done_ms": r.elapsed_ms, "hops": r.hops, "messages": r.messages,
                "found": len(expected.intersection(r.values)), "local": self.nodes[idx].store.count(key)}

    def messages(self) -> None:
        return None

    def counters(self) -> dict[str, int]:
        """The core's and drivers' counters summed over this worker's nodes (drops, retries, timeouts)."""
        total: dict[str, int] = {"bench_put_exceptions": self.put_exceptions}
        for n in self.nodes:
            for k, v in n.status().get("counters", {}).items():
                total[k] = total.get(k, 0) + int(v)
        return total

    async def stop(self) -> None:
        for n in self.nodes:
            await n.stop(graceful=False)
        self.nodes.clear()
