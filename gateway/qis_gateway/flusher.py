"""Outbox flusher: stores queued outcome packets in the swarm at a bounded rate, retrying for ever.

How it works: one asyncio task. It takes the due rows from the outbox (oldest first), waits on a token
bucket (`flush_rate_per_s`, burst of one second's worth) before each put, marks a row done when the swarm took
it (at least one replica) and otherwise schedules a retry with doubling delay (`retry_min_s` ..
`retry_max_s`). When the swarm is unavailable it stops the batch at once instead of failing every row.
With nothing due it sleeps until the next retry time or until `wake()` (a new outcome was queued).
So after an outage the backlog drains at `flush_rate_per_s`: it neither floods the swarm nor starves the fp
lookups, which run concurrently on the same loop. Stopping never loses anything: undone rows stay in
SQLite and the next run picks them up.

Errors are sorted by type (backend.py): an outage (`SwarmUnavailable`, `SwarmStopped`) is retried as
above; a `SwarmUsageError` (the gateway's own node refuses the packet, e.g. a permissioned gateway whose
own key is missing from `trusted_keys`) cannot be mended by retrying, so it is logged once at error
level, `blocked` says why, and the flusher stops putting: the rows stay queued, durable, for the run
after the configuration is fixed. Any other exception is our bug: logged with its traceback, retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from qis_gateway.backend import Swarm, is_unavailable
from qis_gateway.config import OutboxSettings
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.swarm import SwarmUsageError

log = logging.getLogger(__name__)


class OutboxFlusher:
    def __init__(self, state: StateDB, swarm: Swarm, metrics: Metrics, settings: OutboxSettings | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.swarm = swarm
        self.metrics = metrics
        settings = settings or OutboxSettings()
        self.rate_per_s = settings.flush_rate_per_s
        self.retry_min_s = settings.retry_min_s
        self.retry_max_s = settings.retry_max_s
        self.clock = clock
        self._event = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._tokens = max(1.0, self.rate_per_s)
        self._last_refill = time.monotonic()
        self.stored = 0
        self.blocked: str | None = None  # why puts stopped (a usage error), None while flushing

    def wake(self) -> None:
        self._event.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-flusher")

    async def stop(self) -> None:
        """Finish the put in progress, then stop (queued rows stay durable)."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15.0)
            except TimeoutError:
                self._task.cancel()
            self._task = None

    async def _take_token(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(max(1.0, self.rate_per_s), self._tokens + (now - self._last_refill) * self.rate_per_s)
            self._last_refill = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate_per_s)

    async def _run(self) -> None:
        while not self._stopping and self.blocked is None:
            try:
                await self._flush_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a DB error or our bug: log, back off, keep the service alive
                log.exception("outbox flush failed; retrying in 5 s")
                await self._sleep(5.0)

    async def _sleep(self, timeout_s: float | None) -> None:
        self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            pass

    async def _flush_once(self) -> None:
        self.metrics.queue_depth.set(self.state.pending())
        items = self.state.due(self.clock(), limit=32)
        if not items:
            nxt = self.state.next_due_s()
            wait = 5.0 if nxt is None else min(5.0, max(0.01, nxt - self.clock()))
            await self._sleep(wait)
            return
        for item in items:
            if self._stopping:
                return
            await self._take_token()
            try:
                replicas = await self.swarm.put(item.address, item.packet)
            except SwarmUsageError as exc:
                self.metrics.put_failures.inc()
                self.blocked = str(exc)
                log.error("outbox stopped: the swarm refuses outcome packets as a usage error (%s); %d packet(s)"
                          " stay queued and are stored after the configuration is fixed and the gateway restarted"
                          " (a permissioned gateway needs its own key in gateway.trusted_keys)", exc,
                          self.state.pending())
                return
            except Exception as exc:
                when = self.state.mark_retry(item.id, self.clock(), self.retry_min_s, self.retry_max_s)
                self.metrics.put_failures.inc()
                if is_unavailable(exc):
                    log.debug("swarm unavailable; %d packet(s) queued, next try in %.1f s",
                              self.state.pending(), when - self.clock())
                    return
                log.error("put of outbox row %d failed: %r", item.id, exc)
                continue
            self.state.mark_done(item.id, self.clock())
            self.stored += 1
            self.metrics.packets_stored.inc()
            log.debug("stored outcome %s/%d level %d on %d replicas", item.device, item.seq, item.level, replicas)
        self.metrics.queue_depth.set(self.state.pending())
