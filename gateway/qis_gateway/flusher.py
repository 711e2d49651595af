"""Outbox flusher: stores queued outcome packets in the swarm, many puts in flight, retrying for ever.

How it works: one asyncio task keeps up to `max_in_flight` puts running (a put is a lookup of the
address's closest nodes plus a STORE to each, mostly waiting on the network, so one at a time capped the
gateway near 125 packets/s whatever its CPU). Whenever a put finishes it tops the window up from the
outbox's due rows (oldest first, skipping rows in flight), so one slow put never holds the others back.
Each put first takes a token from a bucket (`rate_per_s`, burst of one second's worth): a ceiling that
keeps a backlog from flooding the swarm after an outage; the default is far above what the gateway
admits, so it is not the limit in normal running. Results are written in groups (every `MARK_EVERY_S`,
or `MARK_MAX` results, in one transaction, so one fsync per group): rows the swarm took (at least one
replica) are marked done, the others get a retry with doubling delay (`retry_min_s` .. `retry_max_s`).
When the swarm is unavailable no new put starts for `retry_min_s`. With nothing due it sleeps until the
next retry time or until `wake()` (a new outcome was queued). Stopping never loses anything: undone rows
stay in SQLite and the next run picks them up; a crash before a group's marks are committed only means
those packets are put again (a node keeps one copy of identical bytes).

Errors are sorted by type (backend.py): an outage (`SwarmUnavailable`, `SwarmStopped`) is retried as
above; a `SwarmUsageError` (the gateway's own node refuses the packet, e.g. a permissioned gateway whose
own key is missing from `trusted_keys`) cannot be mended by retrying, so it is logged once at error
level, `blocked` says why, and the flusher stops putting: the rows stay queued, durable, for the run
after the configuration is fixed. Any other exception is our bug: logged, retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from qis_gateway.backend import Swarm, is_unavailable
from qis_gateway.config import OutboxSettings
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import OutboxItem, StateDB
from qis_gateway.swarm import SwarmUsageError

log = logging.getLogger(__name__)


MAX_IN_FLIGHT = 32
MARK_EVERY_S = 0.1
MARK_MAX = 256


class OutboxFlusher:
    def __init__(self, state: StateDB, swarm: Swarm, metrics: Metrics, settings: OutboxSettings | None = None, *,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 clock: Callable[[], float] = time.time,
                 on_put: Callable[[bytes], None] | None = None) -> None:
        self.state = state
        self.swarm = swarm
        self.metrics = metrics
        settings = settings or OutboxSettings()
        self.rate_per_s = settings.flush_rate_per_s
        self.retry_min_s = settings.retry_min_s
        self.retry_max_s = settings.retry_max_s
        self.max_in_flight = max(1, max_in_flight)
        self.clock = clock
        self.on_put = on_put  # called with the address whenever a put to it ends (the lookup cache forgets it)
        self._event = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._tokens = max(1.0, self.rate_per_s)
        self._last_refill = time.monotonic()
        self._puts: dict[int, asyncio.Task[None]] = {}  # outbox row id -> its put
        self._done: list[OutboxItem] = []  # results not yet written
        self._failed: list[OutboxItem] = []
        self._last_mark = time.monotonic()
        self._paused_until = 0.0
        self.stored = 0
        self.blocked: str | None = None  # why puts stopped (a usage error), None while flushing

    def wake(self) -> None:
        self._event.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-flusher")

    async def stop(self) -> None:
        """Finish the puts in progress, write their results, then stop (queued rows stay durable)."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15.0)
            except TimeoutError:
                self._task.cancel()
            self._task = None

    async def _take_token(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            self._tokens = min(max(1.0, self.rate_per_s), self._tokens + (now - self._last_refill) * self.rate_per_s)
            self._last_refill = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate_per_s)

    async def _run(self) -> None:
        try:
            while not self._stopping and self.blocked is None:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a DB error or our bug: log, back off, keep the service alive
                    log.exception("outbox flush failed; retrying in 5 s")
                    await self._sleep(5.0)
            if self._puts:
                await asyncio.wait(set(self._puts.values()))
        finally:
            self._mark()

    async def _sleep(self, timeout_s: float | None) -> None:
        self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            pass

    async def _flush_once(self) -> None:
        """One window: start the puts due now, wait for them all, write the results."""
        self._fill()
        if self._puts:
            await asyncio.wait(set(self._puts.values()))
        self._mark()

    async def _step(self) -> None:
        self._fill()
        if self._puts:
            self._event.clear()
            waker = asyncio.ensure_future(self._event.wait())
            try:
                await asyncio.wait({waker, *self._puts.values()}, timeout=MARK_EVERY_S,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()
        pending = len(self._done) + len(self._failed)
        if pending >= MARK_MAX or (pending and (not self._puts or time.monotonic() - self._last_mark >= MARK_EVERY_S)):
            self._mark()
        if not self._puts and not self._stopping:
            if time.monotonic() < self._paused_until:
                await self._sleep(self._paused_until - time.monotonic())
                return
            if not self.state.due(self.clock(), limit=1):
                nxt = self.state.next_due_s()
                await self._sleep(5.0 if nxt is None else min(5.0, max(0.01, nxt - self.clock())))

    def _fill(self) -> None:
        """Start puts for due rows not in flight, up to the window."""
        free = self.max_in_flight - len(self._puts)
        if free <= 0 or self._stopping or self.blocked is not None or time.monotonic() < self._paused_until:
            return
        busy = set(self._puts) | {i.id for i in self._done} | {i.id for i in self._failed}
        for item in self.state.due(self.clock(), limit=free + len(busy)):
            if item.id in busy:
                continue
            self._puts[item.id] = asyncio.ensure_future(self._put(item))
            free -= 1
            if free == 0:
                break

    async def _put(self, item: OutboxItem) -> None:
        try:
            await self._take_token()
            if self._stopping:
                return
            replicas = await self.swarm.put(item.address, item.packet)
        except asyncio.CancelledError:
            raise
        except SwarmUsageError as exc:
            self.metrics.put_failures.inc()
            if self.blocked is None:
                log.error("outbox stopped: the swarm refuses outcome packets as a usage error (%s); %d packet(s)"
                          " stay queued and are stored after the configuration is fixed and the gateway restarted"
                          " (a permissioned gateway needs its own key in gateway.trusted_keys)", exc,
                          self.state.pending())
            self.blocked = str(exc)
            self._event.set()
            return
        except Exception as exc:
            self._failed.append(item)
            if is_unavailable(exc):
                self._paused_until = time.monotonic() + self.retry_min_s
                log.debug("swarm unavailable; %d packet(s) queued", self.state.pending())
            else:
                log.error("put of outbox row %d failed: %r", item.id, exc)
            return
        finally:
            self._puts.pop(item.id, None)
            if self.on_put is not None:
                self.on_put(item.address)
        self._done.append(item)
        log.debug("stored outcome %s/%d level %d on %d replicas", item.device, item.seq, item.level, replicas)

    def _mark(self) -> None:
        """Write the results gathered so far in one transaction."""
        done, failed = self._done, self._failed
        if not done and not failed:
            return
        self._done, self._failed = [], []
        self._last_mark = time.monotonic()
        now = self.clock()
        with self.state.batch():
            for item in done:
                self.state.mark_done(item.id, now)
            for item in failed:
                self.state.mark_retry(item.id, now, self.retry_min_s, self.retry_max_s)
        self.stored += len(done)
        self.metrics.packets_stored.inc(len(done))
        self.metrics.put_failures.inc(len(failed))
        self.metrics.queue_depth.set(self.state.pending())
