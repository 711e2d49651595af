"""Issue 18 point 10: a Raspberry Pi without a real-time clock must not lose its replicas on a clock jump.

Real ``UdpSwarm`` nodes on 127.0.0.1: the holder runs with its wall clock 48 h behind (a Pi that booted
without network time) while an origin stores 20 values on it; it is stopped (no hand-off) and restarted
with the right clock and a 0.2 s maintenance tick. Before the fix the stored expiry was wall time, so the
first tick deleted all 20; now the store's clock resumes where it stopped and none is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest
from qis_gateway.swarm import api
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core.config import SwarmConfig

from .conftest import run

BEHIND_S = 48 * 3600.0
CONFIG = SwarmConfig(rate_limit_key="addr", maintenance_interval_s=0.2)


def test_replicas_survive_a_48_hour_clock_jump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_time = time.time

    async def main() -> None:
        monkeypatch.setattr(api.time, "time", lambda: real_time() - BEHIND_S)
        holder = UdpSwarm(("127.0.0.1", 0), tmp_path / "holder", config=CONFIG)
        await holder.start()
        origin = UdpSwarm(("127.0.0.1", 0), tmp_path / "origin", [holder.address], config=CONFIG)
        await origin.start()
        for i in range(20):
            await origin.put(hashlib.sha256(b"addr %d" % i).digest(), b"value %d" % i)
        assert holder.store is not None and holder.store.total() == 20
        where = holder.address
        await holder.stop(graceful=False)
        await origin.stop(graceful=False)

        monkeypatch.setattr(api.time, "time", real_time)  # the Pi got network time, then restarted
        again = UdpSwarm(where, tmp_path / "holder", config=CONFIG)
        await again.start()
        try:
            await asyncio.sleep(1.0)  # several maintenance ticks (expiry runs at each)
            assert again.node is not None and again.node.counters["expired"] == 0
            assert again.store is not None and again.store.total() == 20
        finally:
            await again.stop(graceful=False)

    run(main(), 60)


def test_signing_clock_refuses_a_clock_that_is_clearly_wrong() -> None:
    from qis_gateway.signing_clock import FLOOR_S, ClockUnsynchronised, SigningClock

    clock = SigningClock()
    now = real = FLOOR_S + 200 * 86400.0
    assert clock.problem(now) is None
    clock.check(now)
    clock.note_signed(now)
    for wrong in (1_000_000.0, now - BEHIND_S):  # never set (1970 + 11 days); 48 h behind after a reboot
        with pytest.raises(ClockUnsynchronised):
            clock.check(wrong)
    assert clock.refused == 2
    assert clock.problem(real + 60.0) is None  # forward is fine
    assert clock.problem(real - 60.0) is None  # within the slack (small NTP steps)
