"""The outbox flusher: puts pipelined (many in flight), their results committed in groups."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from qis_gateway.config import OutboxSettings
from qis_gateway.flusher import OutboxFlusher

from .helpers import MemorySwarm, Rig, make_rig


class SlowSwarm(MemorySwarm):
    """Each put takes 50 ms of network time; records how many were in flight at once."""

    def __init__(self, shared: dict[bytes, list[bytes]]) -> None:
        super().__init__(shared)
        self.in_flight = 0
        self.max_in_flight = 0

    async def put(self, address: bytes, value: bytes) -> int:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.05)
            return await super().put(address, value)
        finally:
            self.in_flight -= 1


def test_puts_are_pipelined_and_marks_written_in_groups(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    for _ in range(25):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    assert rig.state.pending() == 100
    swarm = SlowSwarm(rig.swarm.shared)
    statements: list[str] = []
    rig.state._db.set_trace_callback(statements.append)

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.05))
        flusher.start()
        for _ in range(1000):
            if not rig.state.pending():
                break
            await asyncio.sleep(0.01)
        await flusher.stop()

    asyncio.run(scenario())
    assert rig.state.pending() == 0 and swarm.puts == 100
    assert swarm.max_in_flight >= 16  # one at a time before
    commits = sum(1 for s in statements if s.strip().upper() == "COMMIT")
    assert 1 <= commits <= 10  # 100 marks written in groups (each was its own autocommit, an fsync, before)
    rig.close()


def test_unavailable_swarm_stops_the_round_and_nothing_is_lost(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    for _ in range(10):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    rig.swarm.available = False

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(retry_min_s=0.05, retry_max_s=0.1))
        flusher.start()
        await asyncio.sleep(0.3)
        rig.swarm.available = True
        for _ in range(500):
            if not rig.state.pending():
                break
            await asyncio.sleep(0.01)
        await flusher.stop()

    asyncio.run(scenario())
    assert rig.state.pending() == 0 and rig.state.stored() == 40
    assert rig.swarm.puts == 40
    rig.close()


class BatchSwarm(MemorySwarm):
    """Records each put_many call (address, how many values)."""

    def __init__(self, shared: dict[bytes, list[bytes]]) -> None:
        super().__init__(shared)
        self.calls: list[tuple[bytes, int]] = []

    async def put_many(self, address: bytes, values: list[bytes]) -> int:
        self.calls.append((address, len(values)))
        for v in values:
            await self.put(address, v)
        return 3


def queue_outcomes(rig: Rig, count: int) -> set[bytes]:
    board = rig.board()
    for _ in range(count):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    return {item.address for item in rig.state.due(float("inf"), limit=10 * count)}


def test_due_rows_are_put_in_groups_by_address(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    addresses = queue_outcomes(rig, 40)  # the same fields: 4 level addresses, 40 packets each
    assert rig.state.pending() == 160 and len(addresses) == 4
    swarm = BatchSwarm(rig.swarm.shared)
    asyncio.run(OutboxFlusher(rig.state, swarm, rig.metrics)._flush_once())
    assert rig.state.pending() == 0 and swarm.puts == 160
    assert {a for a, _ in swarm.calls} == addresses
    assert len(swarm.calls) == 4 and all(n == 40 for _, n in swarm.calls)  # one put per address
    rig.close()


def test_a_group_put_that_fails_is_retried_whole(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 5)
    swarm = BatchSwarm(rig.swarm.shared)
    swarm.available = False
    flusher = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.01))
    asyncio.run(flusher._flush_once())
    assert rig.state.pending() == 20 and flusher.stored == 0
    swarm.available = True
    time.sleep(0.05)  # past the retry delay
    again = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.01))
    asyncio.run(again._flush_once())
    assert rig.state.pending() == 0 and again.stored == 20
    rig.close()


def test_a_backend_without_put_many_gets_one_put_per_packet(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 10)
    swarm = SlowSwarm(rig.swarm.shared)  # no put_many: backend.put_many puts side by side
    asyncio.run(OutboxFlusher(rig.state, swarm, rig.metrics)._flush_once())
    assert rig.state.pending() == 0 and swarm.puts == 40 and swarm.max_in_flight >= 10
    rig.close()
