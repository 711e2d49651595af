"""The outbox flusher: puts pipelined (many in flight), their results committed in groups."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from qis_gateway.config import OutboxSettings
from qis_gateway.flusher import OutboxFlusher

from .helpers import Board, MemorySwarm, Rig, make_rig


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


def queue_outcomes(rig: Rig, count: int, board: Board | None = None) -> set[bytes]:
    board = board or rig.board()
    for _ in range(count):
        t, frame, seq = board.fp()
        rig.bridge.admit(t, frame)
        t, frame, _ = board.outcome(seq, "x")
        rig.bridge.admit(t, frame)
    return {item.address for item in rig.state.due(float("inf"), limit=10 * count)}


async def until_drained(flusher: OutboxFlusher, rig: Rig, step_s: float = 0.01, rounds: int = 1000) -> None:
    """Let the running flusher work until the outbox is empty (at most rounds x step_s), then stop it."""
    for _ in range(rounds):
        if not rig.state.pending():
            break
        await asyncio.sleep(step_s)
    await flusher.stop()


def test_puts_are_pipelined_and_marks_written_in_groups(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 25)
    assert rig.state.pending() == 100
    swarm = SlowSwarm(rig.swarm.shared)
    statements: list[str] = []
    rig.state._db.set_trace_callback(statements.append)

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.05))
        flusher.start()
        await until_drained(flusher, rig)

    asyncio.run(scenario())
    assert rig.state.pending() == 0 and swarm.puts == 100
    assert swarm.max_in_flight >= 16  # one at a time before
    commits = sum(1 for s in statements if s.strip().upper() == "COMMIT")
    assert 1 <= commits <= 10  # 100 marks written in groups (each was its own autocommit, an fsync, before)
    rig.close()


def test_unavailable_swarm_stops_the_round_and_nothing_is_lost(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 10)
    rig.swarm.available = False

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, rig.swarm, rig.metrics, OutboxSettings(retry_min_s=0.05, retry_max_s=0.1))
        flusher.start()
        await asyncio.sleep(0.3)
        rig.swarm.available = True
        await until_drained(flusher, rig, rounds=500)

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


class SlowBatchSwarm(BatchSwarm):
    """Puts end one after the other (each 20 ms after the previous one started)."""

    async def put_many(self, address: bytes, values: list[bytes]) -> int:
        self.started = getattr(self, "started", 0) + 1
        await asyncio.sleep(0.02 * self.started)
        return await super().put_many(address, values)


def _flush_counting_reads(rig: Rig, swarm: MemorySwarm, max_in_flight: int) -> list[int]:
    read: list[int] = []
    due = rig.state.due

    def counting_due(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rows = due(*args, **kwargs)
        read.append(len(rows))
        return rows

    rig.state.due = counting_due  # type: ignore[method-assign]

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.05),
                                max_in_flight=max_in_flight)
        flusher.start()
        await until_drained(flusher, rig, rounds=500)

    asyncio.run(scenario())
    return read


def test_a_narrow_window_leaves_no_row_behind(tmp_path: Path) -> None:
    """The flusher reads on from a cursor that stops before the first row it left behind: with one put at a
    time, the rows of the other addresses that did not fit are read again and every row is put once."""
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 30)  # 4 addresses, interleaved: 120 rows
    swarm = BatchSwarm(rig.swarm.shared)
    _flush_counting_reads(rig, swarm, 1)
    assert rig.state.pending() == 0 and swarm.puts == 120
    assert sum(n for _, n in swarm.calls) == 120
    rig.close()


def test_rows_in_flight_are_not_read_again_on_every_top_up(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 100)  # 400 rows, 4 addresses: 8 puts of up to 64, all in flight at once
    swarm = SlowBatchSwarm(rig.swarm.shared)
    read = _flush_counting_reads(rig, swarm, 32)
    assert rig.state.pending() == 0 and swarm.puts == 400
    assert sum(read) <= 2 * 400  # before: every top-up read every row in flight again (~8 x 400)
    rig.close()


def test_marks_commit_without_their_own_fsync_and_leave_the_db_at_full(tmp_path: Path) -> None:
    """Put results are one NORMAL commit (a lost mark only repeats a put); the connection is back at FULL for
    the frames, and the marks are committed (a second connection sees them)."""
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 5)
    statements: list[str] = []
    rig.state._db.set_trace_callback(statements.append)
    asyncio.run(OutboxFlusher(rig.state, BatchSwarm(rig.swarm.shared), rig.metrics)._flush_once())
    normal = statements.index("PRAGMA synchronous=NORMAL")
    assert statements[normal + 1] == "BEGIN IMMEDIATE" and "PRAGMA synchronous=FULL" in statements[normal:]
    assert rig.state._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    from qis_gateway.outbox import StateDB

    other = StateDB(rig.state.path)
    assert other.pending() == 0 and other.stored() == 20
    other.close()
    rig.close()


class PerAddressSwarm(BatchSwarm):
    """A put_many takes `delay_s`, times 1, 2, 3... for the addresses in the order first put (`staggered`);
    records the most puts in flight for one address at once."""

    def __init__(self, shared: dict[bytes, list[bytes]], delay_s: float = 0.05, staggered: bool = False) -> None:
        super().__init__(shared)
        self.delay_s = delay_s
        self.staggered = staggered
        self.flying: dict[bytes, int] = {}
        self.most_per_address = 0

    async def put_many(self, address: bytes, values: list[bytes]) -> int:
        self.flying[address] = self.flying.get(address, 0) + 1
        self.most_per_address = max(self.most_per_address, self.flying[address])
        try:
            factor = list(self.flying).index(address) + 1 if self.staggered else 1
            await asyncio.sleep(self.delay_s * factor)
            return await super().put_many(address, values)
        finally:
            self.flying[address] -= 1


def test_one_put_per_address_below_a_full_group_and_rows_queued_meanwhile_go_in_the_next(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    board = rig.board()
    addresses = queue_outcomes(rig, 2, board)  # 4 level addresses, 2 packets each
    swarm = PerAddressSwarm(rig.swarm.shared, delay_s=1.0)  # the 30 outcomes below are queued meanwhile

    async def scenario() -> None:
        flusher = OutboxFlusher(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.05))
        flusher.start()
        await asyncio.sleep(0.01)  # the first 4 puts are in flight
        for _ in range(30):  # one at a time, each waking the flusher (as the bridge does)
            queue_outcomes(rig, 1, board)
            flusher.wake()
            await asyncio.sleep(0)
        await until_drained(flusher, rig, rounds=500)

    asyncio.run(scenario())
    assert rig.state.pending() == 0 and swarm.puts == 4 * 32
    assert swarm.most_per_address == 1
    assert {a for a, _ in swarm.calls} == addresses
    # 2 puts per address: the first 2 packets, then the 30 queued while it ran (before: a put per wake)
    assert sorted(n for _, n in swarm.calls) == [2] * 4 + [30] * 4
    rig.close()


def test_waiting_rows_are_bounded_none_is_left_behind_and_full_groups_overlap(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qis_gateway.flusher as flusher_module

    monkeypatch.setattr(flusher_module, "WAIT_MAX", 10)
    monkeypatch.setattr(flusher_module, "GROUP_MAX", 3)
    rig = make_rig(tmp_path)
    queue_outcomes(rig, 30)  # 120 rows over 4 addresses
    swarm = PerAddressSwarm(rig.swarm.shared, delay_s=0.01, staggered=True)  # a put ends while others run
    waiting: list[int] = []

    class Counting(OutboxFlusher):
        def _fill(self) -> None:
            super()._fill()
            waiting.append(len(self._waiting_ids))

    async def scenario() -> None:
        flusher = Counting(rig.state, swarm, rig.metrics, OutboxSettings(retry_min_s=0.05))
        flusher.start()
        await until_drained(flusher, rig, step_s=0.005)

    asyncio.run(scenario())
    assert rig.state.pending() == 0 and swarm.puts == 120 and rig.state.stored() == 120
    assert 0 < max(waiting) <= 10
    assert swarm.most_per_address > 1  # a full group waiting starts another put of its address at once
    assert all(n <= 3 for _, n in swarm.calls)
    rig.close()
