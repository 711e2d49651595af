"""Board messages in, in batches: admitted under one group commit, PUBACKed only once it is durable.

How it works: the reader hands `Intake.handle` every message already waiting (up to `BATCH_MAX`, see
`MqttClient.next_batch`). The whole batch is admitted in arrival order (`Bridge.admit`) inside one
transaction on the state DB and one on the registry; then the state DB commits (frames, readings and
outbox rows), then the registry (the seq high-water marks), and only then are the messages PUBACKed and
the admitted fps' answers started. So a batch costs two fsyncs (one per SQLite file, WAL with
synchronous=FULL) whatever its size, where every message used to cost two or more.

Why that is as safe as a commit per message: nothing is acknowledged before both commits. A SIGKILL
before the state commit loses the batch's writes, and the broker redelivers every message (the session
is persistent, none was PUBACKed). Between the two commits, the frames are recorded but the seq numbers
have not moved: the redelivered messages are admitted again (INSERT OR IGNORE, so no second row, no
second outbox packet) and their seq numbers accepted then. A seq is never accepted twice: the registry's
high-water mark is durable before any frame that moved it is acknowledged, and a frame at or below it is
a replay unless the state DB holds that very frame (a duplicate, answered without a second effect).
Within a batch, a frame sees the writes of the frames before it (same connections, same transactions).

A disk error rolls both transactions back and retries the same batch with backoff (the later messages
wait behind it, so sequence order holds); stopped meanwhile, nothing of it was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import ExitStack

from qis_gateway.bridge import Admitted, Bridge
from qis_gateway.metrics import Metrics
from qis_gateway.mqtt_client import Incoming
from qis_gateway.outbox import StateDB
from qis_gateway.registry import Registry

log = logging.getLogger(__name__)

BATCH_MAX = 256
STORAGE_RETRY_MIN_S = 0.2
STORAGE_RETRY_MAX_S = 30.0


class Intake:
    def __init__(self, bridge: Bridge, registry: Registry, state: StateDB, metrics: Metrics,
                 ack: Callable[[Incoming], None], answer: Callable[[Admitted, float], Awaitable[None]],
                 stopping: asyncio.Event, other: Callable[[Incoming], bool] = lambda msg: False) -> None:
        """`answer` starts an fp's answer (it may wait for a free slot); `other` handles a message that is
        not a board frame (True: handled, to be acknowledged)."""
        self.bridge, self.registry, self.state, self.metrics = bridge, registry, state, metrics
        self.ack, self.answer, self.stopping, self.other = ack, answer, stopping, other
        self.storage_ok = True
        self.batches = 0
        self.messages = 0

    async def handle(self, batch: list[Incoming]) -> None:
        """Admit, commit, acknowledge, then start the answers, for one batch (see module docstring)."""
        delay_s = STORAGE_RETRY_MIN_S
        while True:
            try:
                decided = self._admit_all(batch)
                break
            except (sqlite3.Error, OSError) as exc:
                self.storage_ok = False
                self.metrics.rejections.labels("storage").inc()
                log.error("could not store %d message(s) (%s); retrying in %.1f s", len(batch), exc, delay_s)
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay_s)
                    return  # stopping: nothing of this batch was acknowledged; the broker redelivers it
                except TimeoutError:
                    delay_s = min(STORAGE_RETRY_MAX_S, delay_s * 2)
        self.storage_ok = True
        self.batches += 1
        self.messages += len(batch)
        for msg, _ in decided:
            self.ack(msg)
        for msg, admitted in decided:
            if admitted is not None and admitted.needs_answer:
                await self.answer(admitted, msg.received_s)

    def _admit_all(self, batch: list[Incoming]) -> list[tuple[Incoming, Admitted | None]]:
        """Each message with what admission decided. Every fp is admitted, overloaded or not: one told
        "busy" later (answers.py) is a stored reading its outcome can still refer to."""
        decided: list[tuple[Incoming, Admitted | None]] = []
        with ExitStack() as stack:
            # ExitStack exits in reverse: the state DB (frames, outbox) commits first, then the registry (seqs).
            stack.enter_context(self.registry.batch())
            stack.enter_context(self.state.batch())
            for msg in batch:
                if self.other(msg):
                    decided.append((msg, None))
                    continue
                try:
                    decided.append((msg, self.bridge.admit(msg.topic, msg.payload)))
                except (sqlite3.Error, OSError):
                    raise
                except Exception:  # our bug on odd input: drop it (acked) rather than have it redelivered for ever
                    log.exception("internal error on a message from %s; dropped", msg.topic)
                    self.metrics.rejections.labels("internal").inc()
                    decided.append((msg, None))
        return decided
