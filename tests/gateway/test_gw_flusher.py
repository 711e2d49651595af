"""The outbox flusher: puts pipelined (many in flight), their results committed in groups."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qis_gateway.config import OutboxSettings
from qis_gateway.flusher import OutboxFlusher

from .helpers import MemorySwarm, make_rig


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
