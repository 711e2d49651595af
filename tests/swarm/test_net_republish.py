"""An origin keeps republishing its own values after a restart (published.py): without it, replicas
dropped every value value_ttl_s after the origin's last pre-restart republish."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.core.config import SwarmConfig
from qis_gateway.swarm.published import PublishedValues

SHORT = dataclasses.replace(SwarmConfig(rate_limit_key="addr"), value_ttl_s=3.0, republish_interval_s=1.0,
                            maintenance_interval_s=0.25)


async def start_nodes(base: Path, n: int) -> list[UdpSwarm]:
    nodes: list[UdpSwarm] = []
    for i in range(n):
        node = UdpSwarm(("127.0.0.1", 0), base / ("n%d" % i), [nodes[0].address] if nodes else [], config=SHORT)
        await node.start()
        nodes.append(node)
    return nodes


def test_values_outlive_their_ttl_across_an_origin_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        address = hashlib.sha256(b"republish").digest()
        nodes = await start_nodes(tmp_path, 4)
        origin_dir = tmp_path / "n1"
        assert await nodes[1].put(address, b"outcome") >= 1
        await nodes[1].stop(graceful=False)  # a power cut: the in-memory list of own values is gone
        restarted = UdpSwarm(("127.0.0.1", 0), origin_dir, [nodes[0].address], config=SHORT)
        await restarted.start()
        try:
            assert len(restarted.published) == 1
            await asyncio.sleep(3 * SHORT.value_ttl_s)  # several TTLs: only republishing keeps it alive
            holders = sum(address in node.store.addresses() for node in (nodes[0], nodes[2], nodes[3]))
            assert holders >= 1
            assert (await nodes[3].get(address)).values == (b"outcome",)
        finally:
            await restarted.stop(graceful=False)
            for node in (nodes[0], nodes[2], nodes[3]):
                await node.stop(graceful=False)

    asyncio.run(scenario())


def test_without_the_origin_values_expire(tmp_path: Path) -> None:
    """The control: the same value, origin gone for good, is dropped after its TTL (so the test above
    really measures republishing)."""
    async def scenario() -> None:
        address = hashlib.sha256(b"orphan").digest()
        nodes = await start_nodes(tmp_path, 4)
        assert await nodes[1].put(address, b"outcome") >= 1
        await nodes[1].stop(graceful=False)
        try:
            await asyncio.sleep(3 * SHORT.value_ttl_s)
            assert not any(address in node.store.addresses() for node in (nodes[0], nodes[2], nodes[3]))
        finally:
            for node in (nodes[0], nodes[2], nodes[3]):
                await node.stop(graceful=False)

    asyncio.run(scenario())


def test_udp_node_republishes_its_own_values_from_disk(tmp_path: Path) -> None:
    """The node's published set is the SQLite file (nothing loaded into memory at start or kept per put);
    every put is on disk as soon as put() returns, and a restart finds them all there."""
    async def scenario() -> None:
        nodes = await start_nodes(tmp_path, 3)
        origin = nodes[1]
        try:
            assert isinstance(origin.published, PublishedValues) and origin.node.published is origin.published
            for i in range(20):
                assert await origin.put(hashlib.sha256(b"disk %d" % i).digest(), b"v%d" % i) >= 1
            assert len(origin.published) == 20 and origin.published.count_addresses() == 20
            reader = PublishedValues(tmp_path / "n1" / "published.sqlite3", 100)  # a second connection
            assert sum(len(vals) for _, vals in reader.page(None, 100)) == 20
            reader.close()
        finally:
            for node in nodes:
                await node.stop(graceful=False)
        restarted = UdpSwarm(("127.0.0.1", 0), tmp_path / "n1", [], config=SHORT)
        await restarted.start()
        try:
            assert len(restarted.published) == 20 and restarted.node.published is restarted.published
        finally:
            await restarted.stop(graceful=False)

    asyncio.run(scenario())
