"""Answering admitted fps under overload: oldest first, a bounded wait, and explicit shedding.

How it works: `AnswerQueue.submit` (from the reader, synchronous, never waits) appends an admitted fp to
a FIFO; `workers` tasks take the oldest and answer it (lookup + synthesis + summary). So the reader keeps
admitting at its own pace and the wait happens here, where it is measured, rather than unseen at the
broker. An fp that has waited longer than `max_wait_s` since it arrived when a worker reaches it, that
finds `max_pending` fps already waiting, or whose answer is not ready `deadline_s` after it arrived (a
loop so busy that lookups crawl), is shed: it is not answered, the board gets a signed `busy`
frame on its error topic, and `qis_gateway_shed_total` counts it. Shedding only ever skips a summary: the
reading was admitted and stored before (so an outcome may still refer to it), and outcomes never pass
through here, so an accepted outcome is never shed. Offered more than it can answer, the gateway thus
answers what it can within `deadline_s` and says "busy" to the rest, instead of letting every answer's
latency grow without bound.

Sustained overload is shed on arrival too: while the queue has not drained for longer than
`max_wait_s` and the fp a worker took last had waited more than `late_s`, a new fp would wait as long,
so it is told "busy" at once (`late`), after its admission like every fp, so an outcome can still refer
to it. That keeps the answered fps' wait near `late_s` rather than `max_wait_s`, and the shed ones cost
no queueing.

The wait in front of the queue is bounded the same way, and tighter: when the loop itself falls behind,
frames reach it late (after paho received them) while the queue may look empty. Once every frame has
reached the loop more than `intake_late_s` late for `late_s` on end, and at least `lagging_frames` of
them (a stall of a busy machine delays a few frames, overload hundreds), the loop is *lagging*: from then on
each fp that reaches it over `intake_late_s` late is shed on arrival, and one that reaches it in time
is answered as usual, so the answered ones have waited at most `intake_late_s` in front of the loop.
The lagging state ends once frames have reached the loop in time for `late_s` on end. (Ending it at the
first frame in time, as before, let every frame in for the next `late_s`, and at 3 x capacity that
grew the wait in front of the loop to 0.5-0.9 s for the answered ones; measured per fp, offered
3,000/s.) A burst (a board's backlog after a restart: 100 readings within a fraction of a second) is
not shed on arrival on a machine that keeps up: its queue is younger than `max_wait_s` while it
arrives, and its frames do not reach the loop late for `late_s` on end. On a machine too busy for that
(a loaded CI runner admitting 600 frames at once) part of a burst may be told "busy"; its readings are
stored and their outcomes accepted all the same (an fp used to be shed before its admission here, which
refused its outcome: a SIGKILL burst test caught it losing one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from qis_gateway.bridge import Admitted

log = logging.getLogger(__name__)

WORKERS = 64
# 0.5 s bounded the gateway's own p99 at 1 s under overload (bench, offered 1,000/s on a loaded box:
# <= 2.5 s -> <= 1 s) but shed a board's burst of 100 readings after a restart when the machine was
# busy (tests/gateway/test_gw_process.py, lookups up to ~0.4 s each): 1 s keeps bursts answered.
MAX_WAIT_S = 1.0
# Overload is what `max_wait_s` (time queued before a worker) measures; the deadline only ends answers
# the loop itself can no longer finish. A lookup that is slow for swarm reasons (an OpenDHT get waits
# ~1.2 s per dead node: 3 of 10 killed in hil/test_faults.py) still answers: 2 s shed those as busy.
DEADLINE_S = 10.0
MAX_PENDING = 5000
# Under sustained overload (see the module docstring) an fp is shed on arrival once the ones taken wait
# longer than this: answered fps then wait ~0.25 s plus their answer, so their end-to-end p99 stays within
# 1 s (0.5 s: p99 1.3-1.8 s at offered 3,000/s, the answered fps waiting 0.5-0.9 s before the loop took them).
LATE_S = 0.25
# A lagging loop (module docstring) answers only frames that reach it within this of paho receiving them.
# 0.1 s kept p99 within 1 s too, but offered 3,000/s on a loaded 2-core box it answered 52-68 of 24,000
# (every fp is admitted before it is shed, so shedding alone kept the loop 0.1 s behind); 0.25 s: 305-1,836.
INTAKE_LATE_S = 0.25
# ... and only once this many fps in a row reached it late: overload brings hundreds per late_s (3,000/s:
# 750), a stall of a loaded machine (GC, a slow fsync, another process) a few boards' frames, and shedding
# those only loses their answers (the 600-row replay on a loaded CI runner must answer every reading).
LAGGING_FRAMES = 32


class AnswerQueue:
    def __init__(self, answer: Callable[[Admitted, float], Awaitable[None]],
                 shed: Callable[[Admitted, str, str], None], *, workers: int = WORKERS,
                 max_wait_s: float = MAX_WAIT_S, deadline_s: float = DEADLINE_S,
                 max_pending: int = MAX_PENDING, late_s: float = LATE_S,
                 intake_late_s: float = INTAKE_LATE_S, lagging_frames: int = LAGGING_FRAMES) -> None:
        """`answer(admitted, received_s)` answers one fp; `shed(admitted, reason, why)` tells its board
        "busy" (reason: queue_full, late, waited or deadline; why: the text for the board)."""
        self._answer, self._shed = answer, shed
        self.workers, self.max_wait_s, self.max_pending = max(1, workers), max_wait_s, max_pending
        self.deadline_s = max(deadline_s, max_wait_s)
        self.late_s = min(late_s, max_wait_s)
        self.intake_late_s = min(intake_late_s, self.late_s)
        self.lagging_frames = max(1, lagging_frames)
        self._late_frames = 0  # fps in a row that reached the loop late
        self._last_wait_s = 0.0  # how long the fp a worker took last had waited
        self._backlog_since = 0.0  # perf_counter() when the queue last became non-empty
        self._late_since: float | None = None  # since when every frame reached the loop late
        self._in_time_since: float | None = None  # since when every frame reached the loop in time
        self.lagging = False  # the loop is behind: frames that reach it late are shed on arrival
        # FIFO whose get() wakes one idle worker per item (an Event woke all 64 for every fp)
        self._pending: asyncio.Queue[tuple[Admitted, float]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._stopping = False
        self.shed = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name="fp-answer-%d" % i) for i in range(self.workers)]

    def submit(self, admitted: Admitted, received_s: float) -> None:
        """Queue an fp for its answer (`received_s`: time.perf_counter() when it arrived)."""
        waiting = self._pending.qsize()
        if waiting >= self.max_pending:
            self._drop(admitted, "queue_full", "%d readings already wait for an answer" % waiting)
            return
        if self.overloaded(received_s):
            self._drop(admitted, "late", "readings wait %.1f s for an answer; try later" % self._last_wait_s)
            return
        if not waiting:
            self._backlog_since = received_s
        self._pending.put_nowait((admitted, received_s))

    def overloaded(self, received_s: float) -> bool:
        """Whether an fp arriving at `received_s` would be shed on arrival (sustained overload: the queue
        backlogged with late fps, or a lagging loop reaching this frame late; see the module docstring).
        Each call also records how late this frame reached the loop (the lagging state)."""
        now = time.perf_counter()
        if now - received_s > self.intake_late_s:
            self._in_time_since = None
            self._late_frames += 1
            if self._late_since is None:
                self._late_since = now
            elif now - self._late_since > self.late_s and self._late_frames >= self.lagging_frames:
                self.lagging = True
            if self.lagging:
                return True
        else:
            self._late_since = None
            self._late_frames = 0
            if self._in_time_since is None:
                self._in_time_since = now
            elif now - self._in_time_since > self.late_s:
                self.lagging = False
        return (self._last_wait_s > self.late_s and received_s - self._backlog_since > self.max_wait_s
                and self._pending.qsize() > 0)

    def __len__(self) -> int:
        return self._pending.qsize() + self._busy

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Answer what is queued (bounded by timeout_s), then end the workers."""
        deadline = time.monotonic() + timeout_s
        while len(self) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _drop(self, admitted: Admitted, reason: str, why: str) -> None:
        self.shed += 1
        try:
            self._shed(admitted, reason, why)
        except Exception:  # the answer is best effort; the count above is what matters
            log.exception("could not tell a board it was shed")

    async def _work(self) -> None:
        while not self._stopping:
            admitted, received_s = await self._pending.get()
            waited_s = time.perf_counter() - received_s
            self._last_wait_s = waited_s
            if waited_s > self.max_wait_s:
                self._drop(admitted, "waited", "waited %.1f s for an answer; try later" % waited_s)
                continue
            self._busy += 1
            try:
                # asyncio.timeout, not wait_for: no Task per answer (12 -> 4 us when the lookup is cached)
                async with asyncio.timeout(self.deadline_s - waited_s):
                    await self._answer(admitted, received_s)
            except TimeoutError:
                self._drop(admitted, "deadline", "no answer within %.1f s; try later" % self.deadline_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("answering an fp failed")
            finally:
                self._busy -= 1
