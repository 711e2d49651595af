"""Outbox flusher: stores queued outcome packets in the swarm, many puts in flight, retrying for ever.

How it works: one asyncio task keeps up to `max_in_flight` puts running (a put is a lookup of the
address's closest nodes plus a STORE to each, mostly waiting on the network, so one at a time capped the
gateway near 125 packets/s whatever its CPU). Whenever a put finishes or an outcome is queued it reads the
outbox's due rows past a cursor (oldest first) into a queue per address, and starts a put for each
address with rows queued and no put in flight, so one slow put never holds the other addresses back.
One put carries up to `GROUP_MAX` packets of one address (`backend.put_many`: one lookup and a few paged
STOREs per node instead of one lookup and one STORE per packet; an outcome makes a packet at each of up
to 4 level addresses, and many outcomes share them), and an address has one put at a time: what is
queued while it runs goes in the next, so a busy address gets few full puts, not many of a few packets
(only a full group starts another put of the same address at once: a backlog keeps the window busy).
At most `WAIT_MAX` rows wait in memory; the others stay in SQLite and are read when there is room.
Each put first takes a token per packet from a bucket (`rate_per_s`, burst of one second's worth): a
ceiling that keeps a backlog from flooding the swarm after an outage; the default is far above what the
gateway admits, so it is not the limit in normal running. When a put ends, the lookup cache is told
(`lookup_cache`, the service passes its `Evidence`): a put the swarm took is `absorb`ed (the cached lookup
of the address gains the packets, so the next reading counts them without looking the address up
again), any other end makes it `forget` the address.
Results are written in groups (every `MARK_EVERY_S`, or `MARK_MAX` results, in one transaction without
an fsync of its own: `StateDB.marks`): the rows of a put the swarm took (at least one replica kept every
packet) are marked done, the others get a retry with doubling delay (`retry_min_s` .. `retry_max_s`).
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
from collections.abc import Callable, Sequence
from typing import Protocol

from qis_gateway.backend import Swarm, is_unavailable, put_many
from qis_gateway.config import OutboxSettings
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import OutboxItem, StateDB
from qis_gateway.swarm import SwarmUsageError

log = logging.getLogger(__name__)


MAX_IN_FLIGHT = 32
MARK_EVERY_S = 0.1
MARK_MAX = 256
GROUP_MAX = 128  # packets of one address per put
FILL_MAX = 1024  # due rows read per top-up of the window (besides those in flight)
WAIT_MAX = 4096  # rows read and waiting for their address's put in memory (~1 MB of packets)
DEPTH_EVERY_S = 0.5  # the outbox depth gauge is counted at most this often while puts run
CURSOR_RESET_S = 1.0  # a top-up reads from the oldest due row again at least this often


class LookupCache(Protocol):
    """What the flusher tells the reading path's lookup cache (`evidence.Evidence`)."""

    def absorb(self, address: bytes, values: Sequence[bytes]) -> None: ...

    def forget(self, address: bytes) -> None: ...


class OutboxFlusher:
    def __init__(self, state: StateDB, swarm: Swarm, metrics: Metrics, settings: OutboxSettings | None = None, *,
                 max_in_flight: int = MAX_IN_FLIGHT,
                 clock: Callable[[], float] = time.time,
                 lookup_cache: LookupCache | None = None) -> None:
        self.state = state
        self.swarm = swarm
        self.metrics = metrics
        settings = settings or OutboxSettings()
        self.rate_per_s = settings.flush_rate_per_s
        self.retry_min_s = settings.retry_min_s
        self.retry_max_s = settings.retry_max_s
        self.max_in_flight = max(1, max_in_flight)
        self.clock = clock
        self.lookup_cache = lookup_cache  # told whenever a put ends (module docstring)
        self._event = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._tokens = max(1.0, self.rate_per_s)
        self._last_refill = time.monotonic()
        self._puts: dict[int, asyncio.Task[None]] = {}  # first outbox row id of a group -> its put
        self._flying: set[int] = set()  # every outbox row id in a put
        self._addresses: dict[bytes, int] = {}  # puts in flight per address
        self._waiting: dict[bytes, list[OutboxItem]] = {}  # rows read, by address, awaiting its put (oldest first)
        self._waiting_ids: set[int] = set()
        self._done: list[OutboxItem] = []  # results not yet written
        self._failed: list[OutboxItem] = []
        self._last_mark = time.monotonic()
        self._paused_until = 0.0
        self._cursor: tuple[float, int] | None = None  # (next_try_s, id) of the last row handed out in order
        self._cursor_reset = 0.0
        self._depth_at = -DEPTH_EVERY_S  # when the outbox depth gauge was last counted
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
        """Read the due rows not yet handed out into per-address queues, then start a put for each address
        with rows waiting and no put in flight, up to the window."""
        free = self.max_in_flight - len(self._puts)
        if free <= 0 or self._stopping or self.blocked is not None or time.monotonic() < self._paused_until:
            return
        now = time.monotonic()
        if (not self._puts and not self._done and not self._failed and not self._waiting) or now >= self._cursor_reset:
            # Nothing handed out (or a periodic full look: a row queued behind the cursor by a wall clock
            # that stepped back is found again).
            self._cursor, self._cursor_reset = None, now + CURSOR_RESET_S
        room = WAIT_MAX - len(self._waiting_ids)
        if room > 0:
            # Rows before the cursor are in flight, waiting for their address or awaiting their mark: read
            # on from there, not from the oldest row (re-reading every row in flight on each top-up was 8%
            # of the gateway's samples). Every row read is kept (in its address's queue), so the cursor
            # always moves past it.
            # Past the cursor no row was handed out, so the set of the rows awaiting their mark is built
            # only for a full look (built on every top-up, the union of ~8,000 ids per admitted outcome
            # was most of the flusher's time under a backlog).
            cursor = self._cursor
            flying, waiting = self._flying, self._waiting_ids
            marking = {i.id for i in self._done} | {i.id for i in self._failed} if cursor is None else set()
            limit = min(room, FILL_MAX) + (len(flying) + len(waiting) + len(marking) if cursor is None else 0)
            for item in self.state.due(self.clock(), limit=limit, after=cursor):
                cursor = (item.next_try_s, item.id)
                if item.id not in flying and item.id not in waiting and item.id not in marking:
                    self._waiting.setdefault(item.address, []).append(item)
                    self._waiting_ids.add(item.id)
            self._cursor = cursor
        # One put at a time per address, unless a full group waits: rows queued meanwhile go together in
        # the next put (one lookup and full pages instead of many puts of a few packets each; at 250
        # outcomes/s over 4 shared level addresses the window was spent on puts of 1-4 packets), while a
        # backlog still has many puts in flight (one slow put does not hold its address back).
        for address in list(self._waiting):
            rows = self._waiting[address]
            while free > 0 and rows and (not self._addresses.get(address, 0) or len(rows) >= GROUP_MAX):
                group, rows = rows[:GROUP_MAX], rows[GROUP_MAX:]
                self._waiting_ids.difference_update(i.id for i in group)
                self._flying.update(i.id for i in group)
                self._addresses[address] = self._addresses.get(address, 0) + 1
                self._puts[group[0].id] = asyncio.ensure_future(self._put(group))
                free -= 1
            if rows:
                self._waiting[address] = rows
            else:
                del self._waiting[address]

    async def _take_tokens(self, count: int) -> None:
        for _ in range(min(count, int(max(1.0, self.rate_per_s)))):
            await self._take_token()

    async def _put(self, group: list[OutboxItem]) -> None:
        address = group[0].address
        stored = False
        try:
            await self._take_tokens(len(group))
            if self._stopping:
                return
            replicas = await put_many(self.swarm, address, [i.packet for i in group])
            stored = True
        except asyncio.CancelledError:
            raise
        except SwarmUsageError as exc:
            self.metrics.put_failures.inc(len(group))
            if self.blocked is None:
                log.error("outbox stopped: the swarm refuses outcome packets as a usage error (%s); %d packet(s)"
                          " stay queued and are stored after the configuration is fixed and the gateway restarted"
                          " (a permissioned gateway needs its own key in gateway.trusted_keys)", exc,
                          self.state.pending())
            self.blocked = str(exc)
            self._event.set()
            return
        except Exception as exc:
            self._failed.extend(group)
            if is_unavailable(exc):
                self._paused_until = time.monotonic() + self.retry_min_s
                log.debug("swarm unavailable; %d packet(s) queued", self.state.pending())
            else:
                log.error("put of outbox rows %s failed: %r", ",".join(str(i.id) for i in group), exc)
            return
        finally:
            self._puts.pop(group[0].id, None)
            self._flying.difference_update(i.id for i in group)
            left = self._addresses.pop(address, 1) - 1
            if left > 0:
                self._addresses[address] = left
            if self.lookup_cache is not None:
                if stored:
                    self.lookup_cache.absorb(address, [i.packet for i in group])
                else:
                    self.lookup_cache.forget(address)
        self._done.extend(group)
        log.debug("stored %d outcome packet(s) at %s on %d replicas", len(group), address.hex()[:16], replicas)

    def _mark(self) -> None:
        """Write the results gathered so far in one transaction."""
        done, failed = self._done, self._failed
        if not done and not failed:
            return
        self._done, self._failed = [], []
        self._last_mark = time.monotonic()
        now = self.clock()
        with self.state.marks():  # no fsync of its own: a lost mark only means a packet put again
            for item in done:
                self.state.mark_done(item.id, now)
            for item in failed:
                self.state.mark_retry(item.id, now, self.retry_min_s, self.retry_max_s)
        self.stored += len(done)
        self.metrics.packets_stored.inc(len(done))
        self.metrics.put_failures.inc(len(failed))
        if not self._puts or self._last_mark - self._depth_at >= DEPTH_EVERY_S:
            # COUNT(*) of the undone rows walks them all: 8% of the gateway's samples with a backlog of
            # 10,000 when it ran on every mark (10 a second)
            self._depth_at = self._last_mark
            self.metrics.queue_depth.set(self.state.pending())
