"""``UdpSwarm``: the gateway's swarm object — one ``SwarmNode`` on a UDP socket, with awaitable put/get.

How it works:
- ``start()`` loads (or creates) the node key ``<data>/node.key``, opens the durable value store
  ``<data>/values.sqlite3`` and the node's own values ``<data>/published.sqlite3`` (the core's published
  set, republished from disk a slice at a time: :mod:`.published`), binds the socket (:mod:`.udp`) and
  joins through the given bootstrap addresses plus the peers saved by the last run (``<data>/peers.json``,
  :mod:`.peers`; rewritten every ``peers_save_interval_s`` and at stop, so a SIGKILLed node can rejoin too).
  It waits up to ``join_timeout_s`` for the join; a node that found nobody still starts.
- ``signer_of(value)`` (optional; the gateway passes ``packets.value_signer``) tells the core's storage
  policy who signed a value, for per-signer quotas and new-signer pacing (``core/storage_policy.py``).
- ``put``/``put_many``/``get`` start an operation in the core and await the matching ``PutDone``/``GetDone`` event,
  which the driver hands to :meth:`UdpSwarm._on_event` (futures keyed by op id). The core finishes every
  operation by its own deadline (``SwarmConfig.op_deadline_s``, 5 s: with the values or replicas it has
  then, sending nothing more), so the driver cancels nothing: it waits for the event. ``op_timeout_s``
  (default: the core's deadline + 5 s) is only a safety net against a core that broke that promise
  (logged as an error, raised as :class:`SwarmUnavailable`).
- A swarm of one (no peer in the routing table: a lone gateway, or every peer gone): ``put`` stores the
  value locally and returns 0 replicas instead of failing; the core hands such values to the first peers
  that appear (``Housekeeping.hand_over``). ``get`` answers from the local store (an empty result, not
  :class:`SwarmUnavailable`). ``status()`` says ``alone`` and how many addresses await a hand-over; the
  first put while alone and the first peer afterwards are logged at INFO.
- ``stop(graceful=True)`` asks the core to leave (hand stored values to the next-closest nodes) and waits
  for its ``LeaveDone`` (at most ``leave_timeout_s``), saves the peer list, and closes socket and store.

Errors (the package tree is in ``errors.py``)::

    SwarmError
     +-- SwarmUnavailable   peers are known but none answered (put stored nowhere else / lookup reached nobody)
     +-- SwarmStopped       the swarm is not running (not started yet, or stopped mid-operation)
     +-- SwarmUsageError    (core) bad address length, oversized value, value the validator refused
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import keyfile
from . import peers as peer_file
from .core.config import SwarmConfig
from .core.events import GetDone, JoinDone, LeaveDone, PutDone
from .core.identity import NodeIdentity
from .core.node import SwarmNode
from .errors import SwarmError, SwarmStopped, SwarmUnavailable
from .published import FILE as PUBLISHED_FILE
from .published import PublishedValues
from .store_sqlite import SqliteValueStore
from .udp import Address, SwarmDriver, open_driver

log = logging.getLogger(__name__)

__all__ = ["LookupResult", "SwarmStopped", "SwarmUnavailable", "UdpSwarm"]  # the errors live in errors.py

KEY_FILE = "node.key"
OP_SLACK_S = 5.0  # the driver's wait beyond the core's own op deadline (a safety net, see _await_op)
STORE_FILE = "values.sqlite3"


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What one ``get`` found: the values, rounds until the first answer holding values, requests sent."""

    values: tuple[bytes, ...]
    hops: int
    messages: int
    elapsed_ms: float
    first_ms: float | None


class UdpSwarm:
    """One swarm node on UDP. Not thread-safe: use it from the event loop that started it."""

    def __init__(
        self,
        listen: Address,
        data_dir: Path,
        bootstrap: Iterable[Address] = (),
        config: SwarmConfig | None = None,
        validator: Callable[[bytes, bytes], bool] | None = None,
        identity: NodeIdentity | None = None,
        *,
        rng: random.Random | None = None,
        join_timeout_s: float = 5.0,
        leave_timeout_s: float = 3.0,
        op_timeout_s: float | None = None,
        peers_save_interval_s: float = 300.0,
        signer_of: Callable[[bytes], bytes | None] | None = None,
    ) -> None:
        self.listen = (str(listen[0]), int(listen[1]))
        self.data_dir = Path(data_dir)
        self.bootstrap_addrs = [(str(h), int(p)) for h, p in bootstrap]
        self.config = config
        self.validator = validator
        self.signer_of = signer_of  # the key that signed a value: per-signer storage fairness
        self.identity = identity
        self._rng = rng
        self.join_timeout_s = join_timeout_s
        self.leave_timeout_s = leave_timeout_s
        self.op_timeout_s = op_timeout_s
        self.peers_save_interval_s = peers_save_interval_s
        self._saver: asyncio.Task[None] | None = None
        self.node: SwarmNode | None = None
        self.store: SqliteValueStore | None = None
        self.published: PublishedValues | None = None
        self._driver: SwarmDriver | None = None
        self._address: Address | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._join: asyncio.Future[Any] | None = None
        self._leave: asyncio.Future[Any] | None = None
        self.joined_contacts = 0
        self._alone_logged = False
        self.on_stored: Callable[[bytes, bytes], None] | None = None  # see SwarmNode.on_stored

    def _stored(self, address: bytes, value: bytes) -> None:
        if self.on_stored is not None:
            self.on_stored(address, value)

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def address(self) -> Address:
        """The bound (host, port); valid after ``start()``."""
        if self._address is None:
            raise SwarmStopped("the swarm has no address before start()")
        return self._address

    @property
    def running(self) -> bool:
        return self._driver is not None

    async def start(self) -> None:
        """Bind the socket and join the swarm (see the module docstring)."""
        if self._driver is not None:
            raise SwarmError("start() called twice")
        loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.identity is None:
            self.identity = keyfile.load_or_create(self.data_dir / KEY_FILE)
        if self.config is None:
            self.config = SwarmConfig()
        rng = self._rng or random.Random(int.from_bytes(os.urandom(16), "big"))
        clock_offset_s = time.time() - loop.time()
        # The store's clock resumes where it stopped (not wall time): expiry survives a clock jump.
        self.store = SqliteValueStore(self.data_dir / STORE_FILE, clock_offset_s=clock_offset_s, now_s=loop.time())
        try:
            # Our own values stay on disk: the core reads them a slice per maintenance tick (published.py).
            self.published = PublishedValues(self.data_dir / PUBLISHED_FILE, self.config.max_values_per_node,
                                             clock_offset_s=clock_offset_s)
            self.node = SwarmNode(self.identity, self.config, rng, self.store, self.validator,
                                  published=self.published, signer_of=self.signer_of)
            self.node.on_stored = self._stored
            if len(self.published):
                log.info("republishing %d value(s) this node stored before its restart, paced over %.0f s",
                         len(self.published), self.config.republish_interval_s)
            # Each batch of received datagrams in one store transaction (udp.py): a STORE's values cost one
            # commit per batch, made before the STORED answers go out.
            self._driver, self._address = await open_driver(self.node, self.listen, self._on_event,
                                                            write_batch=self.store.batch,
                                                            on_write_failed=self.store.resync)
        except BaseException:
            self.store.close()
            self.store = None
            if self.published is not None:
                self.published.close()
                self.published = None
            raise
        seeds = [a for a in self.bootstrap_addrs + peer_file.load_peers(self.data_dir) if a != self._address]
        log.info("swarm node %s listening on %s:%d, joining via %d address(es)",
                 self.node_id_hex[:16], self._address[0], self._address[1], len(seeds))
        if seeds:
            self._join = loop.create_future()
            self.node.bootstrap(list(dict.fromkeys(seeds)), loop.time())
            self._driver.pump()
            try:
                done = await asyncio.wait_for(asyncio.shield(self._join), self.join_timeout_s)
                self.joined_contacts = int(getattr(done, "contacts", 0))
            except TimeoutError:
                log.warning("join did not finish within %.1f s; continuing with %d contact(s)",
                            self.join_timeout_s, len(self.node.routing_table))
            if len(self.node.routing_table) == 0:
                log.warning("no bootstrap peer answered; working as a swarm of one until one does")
        if self.peers_save_interval_s > 0:
            self._saver = asyncio.create_task(self._save_peers_regularly())

    async def _save_peers_regularly(self) -> None:
        """Keep peers.json fresh so a node that is SIGKILLed can still rejoin on its own."""
        while True:
            await asyncio.sleep(self.peers_save_interval_s)
            self._save_peers()

    def _save_peers(self) -> None:
        contacts = self._contact_addresses()
        if not contacts:
            return  # never overwrite a useful list with an empty one
        try:
            peer_file.save_peers(self.data_dir, contacts)
        except OSError as exc:
            log.warning("could not save the peer list: %s", exc)

    async def stop(self, graceful: bool = True) -> None:
        """Leave the swarm (graceful: hand values on first) and release socket and store. Idempotent."""
        driver = self._driver
        if driver is None:
            return
        if graceful:
            self._leave = asyncio.get_running_loop().create_future()
            try:
                self.node.leave(driver.now_s)
                driver.pump()
                await asyncio.wait_for(asyncio.shield(self._leave), self.leave_timeout_s)
            except TimeoutError:
                log.warning("graceful leave did not finish within %.1f s; closing anyway", self.leave_timeout_s)
            except Exception:
                log.exception("graceful leave failed; closing anyway")
        if self._saver is not None:
            self._saver.cancel()
            self._saver = None
        self._save_peers()
        self._driver = None
        driver.close()
        try:  # the transport closes its socket on the next loop turn; wait so the port is free on return
            await asyncio.wait_for(asyncio.shield(driver.closed), 1.0)
        except TimeoutError:
            log.warning("socket did not close within 1 s")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SwarmStopped("the swarm was stopped during this operation"))
        self._pending.clear()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.published is not None:
            self.published.close()
            self.published = None
        log.info("swarm node stopped (%s)", "graceful" if graceful else "abrupt")

    async def __aenter__(self) -> UdpSwarm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- operations -------------------------------------------------------------------------------------
    async def put(self, address: bytes, value: bytes) -> int:
        """Store ``value`` at ``address`` on the k closest nodes; returns how many peers took it. With no
        peer known (a swarm of one) the value is stored here only and 0 is returned; it is handed to the
        first peers that appear. Raises SwarmUnavailable when peers are known but none took it."""
        driver = self._require_running()
        alone = self._alone()
        op = self.node.start_put(bytes(address), bytes(value), driver.now_s)  # also recorded in published
        done: PutDone = await self._await_op(op, driver)
        replicas = int(done.replicas)
        if replicas <= 0:
            if alone:
                return 0
            raise SwarmUnavailable("no peer stored the value (kept locally; queue it and retry)")
        return replicas

    async def put_many(self, address: bytes, values: list[bytes]) -> int:
        """Store several values at one ``address`` with one put (one lookup; the STOREs to each of the k
        closest nodes carry as many values as fit in a datagram, in pages, a few in flight per node);
        returns how many peers kept every value (core/put.py). Alone / unavailable / invalid as ``put``; one
        invalid value refuses them all."""
        driver = self._require_running()
        alone = self._alone()
        with self.store.batch(), self.published.batch():  # one commit each for the lot, not one per value
            op = self.node.start_put_many(bytes(address), [bytes(v) for v in values], driver.now_s)
        done: PutDone = await self._await_op(op, driver)
        replicas = int(done.replicas)
        if replicas <= 0:
            if alone:
                return 0
            raise SwarmUnavailable("no peer stored the values (kept locally; queue them and retry)")
        return replicas

    async def get(self, address: bytes, limit: int = 200) -> LookupResult:
        """Find up to ``limit`` values stored at ``address`` (with no peer known: the local ones)."""
        driver = self._require_running()
        op = self.node.start_get(bytes(address), int(limit), driver.now_s)
        done: GetDone = await self._await_op(op, driver)
        if not done.ok and not done.values and not self._alone():
            raise SwarmUnavailable("no peer answered the lookup for %s" % bytes(address).hex()[:16])
        first = None if done.first_value_s is None else done.first_value_s * 1000.0
        return LookupResult(tuple(done.values), int(done.hops), int(done.messages), done.elapsed_s * 1000.0, first)

    def status(self) -> dict[str, Any]:
        """Node id, bound address, peers, stored values and counters (JSON-serialisable)."""
        if self.node is None:
            return {"running": False}
        counters = dict(self.node.counters)
        counters.update(self.node.rate_refusals())  # which class of source the limiter refused
        if self._driver is not None:
            counters.update(self._driver.counters)
        return {
            "running": self._driver is not None,
            "node_id": self.node_id_hex,
            "address": list(self._address) if self._address else None,
            "peers": len(self.node.routing_table),
            "alone": len(self.node.routing_table) == 0,
            "awaiting_handover": self.node.awaiting_handover,
            "stored_values": self.store.total() if self.store is not None else None,
            "counters": counters,
        }

    @property
    def node_id_hex(self) -> str:
        return bytes(self.node.node_id).hex() if self.node is not None else ""

    # -- internals -----------------------------------------------------------------------------------------
    def _alone(self) -> bool:
        """No peer in the routing table; the change is logged at INFO (once each way)."""
        alone = len(self.node.routing_table) == 0
        if alone and not self._alone_logged:
            log.info("no swarm peers: working as a swarm of one (values stored here, handed to peers when "
                     "some appear)")
        elif not alone and self._alone_logged:
            log.info("swarm peers found (%d); %d address(es) stored while alone are being handed over",
                     len(self.node.routing_table), self.node.awaiting_handover)
        self._alone_logged = alone
        return alone

    def _require_running(self) -> SwarmDriver:
        if self._driver is None:
            raise SwarmStopped("the swarm is not running (await start() first)")
        return self._driver

    async def _await_op(self, op: int, driver: SwarmDriver) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._pending[op] = fut
        driver.pump()  # sends the first requests, and may already deliver the done event
        wait_s = self.op_timeout_s
        if wait_s is None:
            wait_s = (self.config.op_deadline_s if self.config is not None else SwarmConfig.op_deadline_s) + OP_SLACK_S
        try:
            return await asyncio.wait_for(fut, wait_s)
        except TimeoutError:
            log.error("swarm operation %d did not report within %.1f s (past the core's own deadline)", op, wait_s)
            raise SwarmUnavailable("operation %d did not finish in %.0f s" % (op, wait_s)) from None
        finally:
            self._pending.pop(op, None)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, (JoinDone, LeaveDone)):
            fut = self._join if isinstance(event, JoinDone) else self._leave
            if fut is not None and not fut.done():
                fut.set_result(event)
            return
        op = getattr(event, "op_id", None)
        fut = self._pending.get(op) if op is not None else None
        if fut is not None and not fut.done():
            fut.set_result(event)

    def _contact_addresses(self) -> list[Address]:
        out: list[Address] = []
        for c in self.node.routing_table.contacts():
            addr = getattr(c, "addr", None) or getattr(c, "address", None)
            if isinstance(addr, tuple) and len(addr) >= 2:
                out.append((str(addr[0]), int(addr[1])))
        return out
