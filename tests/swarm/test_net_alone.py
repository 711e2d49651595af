"""A lone gateway's UdpSwarm (issue 14 point 6): with no peer, a put is stored locally and counts as stored,
a get answers from the node's own store, and a node that joins later receives the values (before, put raised
SwarmUnavailable for ever, so the gateway's outbox grew and its summaries stayed n=0)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from pathlib import Path

import pytest
from qis_gateway.swarm.api import SwarmUnavailable, UdpSwarm
from qis_gateway.swarm.config import SwarmConfig

FAST = dataclasses.replace(SwarmConfig(rate_limit_key="addr"), maintenance_interval_s=0.2)
ADDRESS = hashlib.sha256(b"alone").digest()


async def wait_until(check, limit_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


def test_a_swarm_of_one_stores_and_answers_then_hands_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        lone = UdpSwarm(("127.0.0.1", 0), tmp_path / "lone", config=FAST, join_timeout_s=0.5)
        await lone.start()
        second = None
        try:
            with caplog.at_level(logging.INFO, logger="qis_gateway.swarm.api"):
                assert await lone.put(ADDRESS, b"outcome 1") == 0
                assert await lone.put(ADDRESS, b"outcome 2") == 0
            assert sum("swarm of one" in r.getMessage() for r in caplog.records) == 1  # said once, not per put
            found = await lone.get(ADDRESS)
            assert sorted(found.values) == [b"outcome 1", b"outcome 2"]
            empty = await lone.get(hashlib.sha256(b"nothing here").digest())  # not SwarmUnavailable
            assert empty.values == ()
            status = lone.status()
            assert status["alone"] is True and status["peers"] == 0 and status["awaiting_handover"] == 1
            await asyncio.sleep(1.0)  # maintenance ticks with nobody to hand to: still waiting
            assert lone.status()["awaiting_handover"] == 1

            second = UdpSwarm(("127.0.0.1", 0), tmp_path / "second", [lone.address], config=FAST)
            await second.start()
            assert await wait_until(lambda: second.store.count(ADDRESS) == 2)
            assert lone.status()["awaiting_handover"] == 0 and lone.status()["alone"] is False
            await lone.stop(graceful=False)  # no leave hand-off: the values got there on their own
            assert sorted((await second.get(ADDRESS)).values) == [b"outcome 1", b"outcome 2"]
        finally:
            await lone.stop(graceful=False)
            if second is not None:
                await second.stop(graceful=False)

    asyncio.run(scenario())


def test_peers_known_but_silent_still_raise(tmp_path: Path) -> None:
    """Not alone (a peer is in the table) but nobody answers: the put fails as before, so the gateway's
    outbox keeps the packet and retries it."""
    async def scenario() -> None:
        a = UdpSwarm(("127.0.0.1", 0), tmp_path / "a", config=FAST)
        await a.start()
        try:
            c = UdpSwarm(("127.0.0.1", 0), tmp_path / "c", [a.address], config=FAST)
            await c.start()
            assert await wait_until(lambda: len(a.node.routing_table) == 1)
            await c.stop(graceful=False)  # c dies without LEAVE: a still lists it
            with pytest.raises(SwarmUnavailable):
                await a.put(ADDRESS, b"outcome")
            assert a.status()["awaiting_handover"] == 0
        finally:
            await a.stop(graceful=False)

    asyncio.run(scenario())
