"""Issue 18 point 5: forged source addresses must not fill the rate limiter and lock real peers out.

A real ``qis-swarm node`` process on 127.0.0.1 (default limits: 500 datagrams/s per source IP) holds 20
values. A separate flooding process sends valid FIND_NODE requests from 4,200 forged sources 127.1.x.y at
2,800 datagrams/s for 10 s. Meanwhile a proven peer (joined before the flood) reads the values, one get
every ~0.1 s, and a fresh node on 127.0.0.3 joins through the flooded node. Before the fix the limiter's
table (4,096 busy sources) refused every new source and was rebuilt on each refusal; now proven peers
keep their own buckets and everyone else shares hashed slots and a bounded budget: >= 99% of the gets
succeed and the fresh node joins.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import pytest
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.config import SwarmConfig

from .conftest import run

pytestmark = [pytest.mark.slow, pytest.mark.adversarial]

SOURCES, RATE, SECONDS = 4200, 2800.0, 10.0


async def _start_node(data: Path) -> tuple[asyncio.subprocess.Process, tuple[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qis_gateway.swarm.cli", "--log-level", "WARNING", "node", "--listen", "127.0.0.1:0",
        "--data", str(data), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    return proc, (line["address"][0], int(line["address"][1]))


def test_forged_sources_do_not_lock_out_proven_or_new_peers(tmp_path: Path) -> None:
    addresses = [hashlib.sha256(b"forged %d" % i).digest() for i in range(20)]

    async def main() -> None:
        proc, victim = await _start_node(tmp_path / "victim")
        config = SwarmConfig(rate_limit_key="ip")
        nodes: list[UdpSwarm] = []
        flood = None
        try:
            origin = UdpSwarm(("127.0.0.1", 0), tmp_path / "origin", [victim], config=config)
            await origin.start()
            for i, a in enumerate(addresses):
                await origin.put(a, b"value %d" % i)
            await origin.stop(graceful=True)  # hands over and says LEAVE: the victim alone holds them now
            reader = UdpSwarm(("127.0.0.1", 0), tmp_path / "reader", [victim], config=config, op_timeout_s=3.0)
            await reader.start()
            nodes.append(reader)
            assert (await reader.get(addresses[0], 8)).values == (b"value 0",)

            flood = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).with_name("flood.py")), victim[0], str(victim[1]), str(SOURCES),
                str(RATE), str(SECONDS), stdout=asyncio.subprocess.PIPE)
            await asyncio.sleep(2.0)  # every forged source has sent by now: the old table is full

            fresh = UdpSwarm(("127.0.0.3", 0), tmp_path / "fresh", [victim], config=config, join_timeout_s=5.0)
            await fresh.start()
            nodes.append(fresh)
            ok = 0
            gets = 60
            for i in range(gets):
                try:
                    got = await reader.get(addresses[i % 20], 8)
                    ok += got.values == (b"value %d" % (i % 20),)
                except Exception:
                    pass
                await asyncio.sleep(0.05)
            report, _ = await flood.communicate()
            sent = json.loads(report)["sent"]
            print("flood sent %d; proven peer's gets %d/%d; fresh node joined with %d contacts"
                  % (sent, ok, gets, fresh.joined_contacts))
            assert sent >= 0.8 * RATE * SECONDS  # the flood really ran at about its rate
            assert ok >= 0.99 * gets
            assert fresh.joined_contacts >= 1
        finally:
            if flood is not None and flood.returncode is None:
                flood.kill()
                await flood.wait()
            for n in nodes:
                await n.stop(graceful=False)
            proc.terminate()
            await proc.wait()

    run(main(), 120)
