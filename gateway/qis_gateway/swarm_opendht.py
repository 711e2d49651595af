"""OpenDHT as the gateway's swarm: the same `put`/`get` the bridge uses, on a mature C++ DHT engine.

How it works:
- One `opendht.DhtRunner` (its own C++ threads) bound to the configured IPv4 address only, on a private
  network id, with LAN peer discovery off: it joins nothing but the bootstrap nodes it is given (OpenDHT
  never contacts its public bootstrap network unless told to).
- Address mapping: OpenDHT keys are 160-bit. Key = the first 20 bytes of our 256-bit address (a prefix of
  SHA-256/HMAC output is itself a uniform hash). Two addresses sharing a 160-bit prefix would share a
  key; every packet carries its full address and is checked by the validator (`packets.verify(...,
  address)`), so a colliding or foreign value is dropped exactly as on our own swarm.
- Values: a packet's bytes, with value id = the first 8 bytes of SHA-256(bytes), so putting the same packet
  again refreshes it instead of duplicating it. OpenDHT expires values after 10 minutes unless their
  origin puts them again, so every value this gateway put is kept in `<data>/opendht-own.sqlite3` and
  re-put every `republish_s` (and at start) until its TTL ends: outcomes outlive restarts, as on ours.
- `get` collects values on OpenDHT's callback threads, hands them to the event loop, drops every value
  the validator refuses (counted in `status()["rejected"]`) and returns our `LookupResult`. OpenDHT does
  not expose a search's hop or request counts: `hops` and `messages` are reported as 0 (unknown).

OpenDHT is an optional extra: without it, constructing this backend raises `OpenDhtMissing` naming
`pip install 'opendht>=3.0'` (the `opendht` extra).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qis_gateway.config import default
from qis_gateway.swarm import SwarmError, SwarmStopped, SwarmUnavailable, SwarmUsageError
from qis_gateway.swarm.api import LookupResult

log = logging.getLogger(__name__)

Address = tuple[str, int]
DEFAULT_NETWORK_ID: int = default("swarm", "opendht_network")  # "QIS1": keeps our nodes off other networks
KEY_BYTES = 20


class OpenDhtMissing(SwarmError, ImportError):
    """The opendht package is not installed."""


def _import_opendht() -> Any:
    try:
        import opendht
    except ImportError as exc:
        raise OpenDhtMissing(
            "the OpenDHT swarm backend needs the optional package: pip install 'opendht>=3.0' "
            "(or set [swarm] backend = \"kademlia\")") from exc
    return opendht


def dht_key(address: bytes) -> bytes:
    """The 160-bit OpenDHT key of a 256-bit address (its first 20 bytes)."""
    if len(address) != 32:
        raise SwarmUsageError("an address is 32 bytes, got %d" % len(address))
    return bytes(address[:KEY_BYTES])


def value_id(value: bytes) -> int:
    return int.from_bytes(hashlib.sha256(value).digest()[:8], "big")


class _OwnValues:
    """Values this gateway put, kept durably so it can re-put them (OpenDHT forgets after 10 min)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS own (id BLOB PRIMARY KEY, address BLOB NOT NULL,"
                        " value BLOB NOT NULL, expires_s REAL NOT NULL)")

    def add(self, address: bytes, value: bytes, expires_s: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO own VALUES (?, ?, ?, ?)",
                        (hashlib.sha256(value).digest(), address, value, expires_s))

    def live(self, now_s: float) -> list[tuple[bytes, bytes]]:
        self.db.execute("DELETE FROM own WHERE expires_s <= ?", (now_s,))
        return [(bytes(a), bytes(v)) for a, v in self.db.execute("SELECT address, value FROM own")]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM own").fetchone()[0])

    def close(self) -> None:
        self.db.close()


class OpenDhtSwarm:
    """The `qis_gateway.backend.Swarm` protocol over OpenDHT. Use from the event loop that started it."""

    def __init__(self, listen: Address, data_dir: Path, bootstrap: Iterable[Address] = (),
                 validator: Callable[[bytes, bytes], bool] | None = None, *,
                 network_id: int = DEFAULT_NETWORK_ID, rate_limit_per_s: float = 0.0,
                 republish_s: float = 300.0, value_ttl_s: float = 30 * 86400.0, op_timeout_s: float = 30.0) -> None:
        self.dht = _import_opendht()
        self.listen = listen
        self.data_dir = Path(data_dir)
        self.bootstrap = list(bootstrap)
        self.validator = validator
        self.network_id = network_id
        self.rate_limit_per_s = rate_limit_per_s
        self.republish_s = republish_s
        self.value_ttl_s = value_ttl_s
        self.op_timeout_s = op_timeout_s
        self.runner: Any = None
        self.own: _OwnValues | None = None
        self._republisher: asyncio.Task[None] | None = None
        # Read once at start: the binding holds the GIL while it waits for the DHT thread's lock, and the
        # DHT thread holds that lock while it waits for the GIL to run our callbacks -- a deadlock if
        # getBound()/getNodeId() are called while values arrive (seen in tests).
        self._bound: Address | None = None
        self._node_id: str | None = None
        self.counters = {"puts": 0, "gets": 0, "rejected": 0, "republished": 0}

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        if self._bound is None:
            raise SwarmStopped("the swarm has no address before start()")
        return self._bound

    async def start(self) -> None:
        if self.runner is not None:
            raise SwarmError("start() called twice")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.own = _OwnValues(self.data_dir / "opendht-own.sqlite3")
        cfg = self.dht.DhtConfig()
        cfg.setNetwork(self.network_id)
        cfg.setPeerDiscovery(False, False)
        if self.rate_limit_per_s > 0:
            rate = int(self.rate_limit_per_s)
            cfg.setRateLimit(rate * 4, rate)
        else:
            cfg.setRateLimit(-1, -1)  # OpenDHT's 1,024 req/s per IP stalls swarms that share one address
        runner = self.dht.DhtRunner()
        runner.run(ipv4=self.listen[0], ipv6="", port=int(self.listen[1]), config=cfg)
        self._bound = (self.listen[0], int(runner.getBound().getPort()))
        self._node_id = str(runner.getNodeId())
        self.runner = runner
        for host, port in self.bootstrap:
            runner.bootstrap(host, str(port))
        log.info("OpenDHT node %s on %s:%d (network %#x, %d bootstrap nodes)", self._node_id,
                 *self.address, self.network_id, len(self.bootstrap))
        self._republisher = asyncio.get_running_loop().create_task(self._republish_forever())

    async def stop(self, graceful: bool = True) -> None:
        if self.runner is None:
            return
        if self._republisher:
            self._republisher.cancel()
        runner, self.runner, self._bound = self.runner, None, None
        # Always shut down before join(): the binding's join() holds the GIL while it waits for the DHT
        # thread, so the DHT thread must be done calling into Python first (our done callbacks, and the
        # shutdown callback itself) or both wait for ever. `graceful` has no other meaning here: OpenDHT
        # hands nothing over on leave; our own values come back through republishing.
        finished = threading.Event()
        runner.shutdown(finished.set)
        if not await asyncio.to_thread(finished.wait, 10.0):
            log.warning("OpenDHT shutdown did not finish in 10 s; joining anyway")
        await asyncio.sleep(0.2)  # let the DHT thread return from the callback and drop the GIL
        runner.join()
        if self.own:
            self.own.close()
            self.own = None

    # -- operations ----------------------------------------------------------------------------------

    async def put(self, address: bytes, value: bytes) -> int:
        runner = self._require_running()
        if self.validator is not None and not self._valid(address, value):
            raise SwarmUsageError("the validator refused this value for %s" % address.hex()[:16])
        assert self.own is not None
        self.own.add(bytes(address), bytes(value), time.time() + self.value_ttl_s)
        replicas = await self._put_once(runner, address, value)
        self.counters["puts"] += 1
        if replicas == 0:
            raise SwarmUnavailable("no OpenDHT node stored the value (kept for republishing; retry)")
        return replicas

    async def put_many(self, address: bytes, values: list[bytes]) -> int:
        """OpenDHT has no multi-value put: one `put` per value, side by side; the fewest replicas, or the
        first error once all have ended (a retry puts them all again; a node keeps one copy of each)."""
        results = await asyncio.gather(*(self.put(address, v) for v in values), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return min((int(r) for r in results), default=0)  # type: ignore[arg-type]

    async def get(self, address: bytes, limit: int = 200) -> LookupResult:
        runner = self._require_running()
        key = self.dht.InfoHash(dht_key(address).hex().encode())
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[bool] = loop.create_future()
        found: list[bytes] = []
        lock = threading.Lock()
        started = time.perf_counter()
        first: list[float] = []

        def on_value(v: Any) -> bool:
            with lock:
                if not first:
                    first.append(time.perf_counter())
                found.append(bytes(v.data))
                return len(found) < limit * 4  # stop early once far more than asked for arrived

        def on_done(ok: bool, _nodes: Any) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(bool(ok)))

        runner.get(key, on_value, on_done)
        try:
            await asyncio.wait_for(finished, timeout=self.op_timeout_s)
        except TimeoutError:
            raise SwarmUnavailable("OpenDHT get did not finish in %.0f s" % self.op_timeout_s) from None
        self.counters["gets"] += 1
        with lock:
            raw = list(dict.fromkeys(found))  # de-duplicate, keep arrival order
        values = tuple(v for v in raw if self._valid(address, v))[:limit]
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        first_ms = (first[0] - started) * 1000.0 if first else None
        return LookupResult(values=values, hops=0, messages=0, elapsed_ms=elapsed_ms, first_ms=first_ms)

    def status(self) -> dict[str, Any]:
        running = self.runner is not None
        return {
            "backend": "opendht",
            "node_id": self._node_id if running else None,
            "listen": "%s:%d" % self.address if running else None,
            "network_id": self.network_id,
            "own_values": self.own.count() if self.own else 0,
            "counters": dict(self.counters),
        }

    # -- internals -----------------------------------------------------------------------------------

    def _require_running(self) -> Any:
        if self.runner is None:
            raise SwarmStopped("the swarm is not running (await start() first)")
        return self.runner

    def _valid(self, address: bytes, value: bytes) -> bool:
        if self.validator is None:
            return True
        try:
            ok = bool(self.validator(address, value))
        except Exception:  # a validator failure is a rejection, never a crash (style rule 5)
            ok = False
        if not ok:
            self.counters["rejected"] += 1
        return ok

    async def _put_once(self, runner: Any, address: bytes, value: bytes) -> int:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[int] = loop.create_future()
        dvalue = self.dht.Value(bytes(value))
        dvalue.id = value_id(value)

        def on_done(ok: bool, nodes: Any) -> None:
            count = len(list(nodes)) if ok and nodes is not None else 0
            loop.call_soon_threadsafe(lambda: result.done() or result.set_result(count if ok else 0))

        runner.put(self.dht.InfoHash(dht_key(address).hex().encode()), dvalue, on_done)
        try:
            return await asyncio.wait_for(result, timeout=self.op_timeout_s)
        except TimeoutError:
            return 0

    async def _republish_forever(self) -> None:
        while True:
            try:
                await self._republish()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep republishing whatever one round hit
                log.exception("OpenDHT republish round failed")
            await asyncio.sleep(self.republish_s)

    async def _republish(self) -> None:
        if self.own is None or self.runner is None:
            return
        for address, value in self.own.live(time.time()):
            if self.runner is None:
                return
            if await self._put_once(self.runner, address, value):
                self.counters["republished"] += 1
