"""Issue 18 point 4 against running nodes on loopback: a gateway's burst far above what its peers' rate
limiters admit (here 50 datagrams/s per source, so a few thousand gets are enough) made almost every
request time out, and the gateway evicted its peers down to 0. Now it keeps at least 2 throughout,
and a put right after the burst reaches the swarm."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core.config import SwarmConfig

from .conftest import run

PEER_CONFIG = SwarmConfig(rate_limit_per_s=50.0, rate_limit_burst=100.0, rate_limit_unproven_per_s=50.0)


@pytest.mark.slow
@pytest.mark.adversarial
def test_a_burst_keeps_the_gateway_in_the_swarm(tmp_path: Path) -> None:
    async def main() -> None:
        first = UdpSwarm(("127.0.0.1", 0), tmp_path / "p0", [], config=PEER_CONFIG)
        await first.start()
        peers = [first]
        for i in range(1, 3):
            p = UdpSwarm(("127.0.0.1", 0), tmp_path / ("p%d" % i), [first.address], config=PEER_CONFIG)
            await p.start()
            peers.append(p)
        gw = UdpSwarm(("127.0.0.2", 0), tmp_path / "gw", [first.address], config=SwarmConfig(),
                      op_timeout_s=20.0)
        await gw.start()
        try:
            assert len(gw.node.routing_table) == 3
            lowest = 3
            done = asyncio.Event()

            async def watch() -> None:
                nonlocal lowest
                while not done.is_set():
                    lowest = min(lowest, len(gw.node.routing_table))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            for wave in range(6):
                await asyncio.gather(*(gw.get(bytes([wave, i % 256]) * 16) for i in range(500)),
                                     return_exceptions=True)
            done.set()
            await watcher
            c = gw.node.counters
            print("burst: %d sent, %d timeouts, %d rate-limited at the first peer, %d BUSY in, %d requests paced, "
                  "%d retries held, %d evictions withheld, %d evicted, lowest %d peers"
                  % (c["sent"], c["timeouts"], first.node.counters["drop_rate_limited"], c["busy_in"], c["paced"],
                     c["retries_held"], c["evictions_withheld"], c["contacts_evicted"], lowest))
            assert c["timeouts"] > 100  # the burst really overloaded the peers
            assert lowest >= 2
            assert c["paced"] > 0  # the gateway paced itself on the peers' BUSY answers
            await asyncio.sleep(2.0)  # the peers' buckets refill
            replicas = await asyncio.wait_for(gw.put(b"\x55" * 32, b"after the burst"), 5.0)
            assert replicas >= 1
        finally:
            for n in [gw, *peers]:
                await n.stop(graceful=False)

    run(main(), 240)
