"""UdpSwarm on real UDP sockets (127.0.0.1, port 0): join, put/get, paging, restart, leave, hostile input."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest
from qis_gateway.swarm.api import LookupResult, SwarmStopped, SwarmUnavailable, UdpSwarm
from qis_gateway.swarm.config import SwarmConfig

# Every test node shares 127.0.0.1: rate-limit per (ip, port), not per ip.
CONFIG = SwarmConfig(rate_limit_key="addr")


def addr_of(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


async def start_swarm(base: Path, n: int, config: SwarmConfig = CONFIG) -> list[UdpSwarm]:
    nodes: list[UdpSwarm] = []
    for i in range(n):
        seeds = [nodes[0].address, nodes[-1].address] if nodes else []
        node = UdpSwarm(("127.0.0.1", 0), base / ("n%d" % i), seeds, config=config, join_timeout_s=5.0)
        await node.start()
        nodes.append(node)
    return nodes


async def stop_all(nodes: list[UdpSwarm], graceful: bool = False) -> None:
    for node in nodes:
        await node.stop(graceful=graceful)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


def test_join_put_get_on_twelve_nodes(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 12)
        try:
            assert all(len(n.node.routing_table) >= 1 for n in nodes)
            key = addr_of("join-put-get")
            replicas = await nodes[3].put(key, b"packet-one")
            assert replicas >= len(nodes) - 2  # k=20 > 11 peers: (nearly) every other node stores it
            for i in (0, 7, 11):
                r = await nodes[i].get(key)
                assert isinstance(r, LookupResult)
                assert r.values == (b"packet-one",)
                assert r.messages >= 1 and r.hops >= 0
                assert r.elapsed_ms > 0 and r.first_ms is not None and r.first_ms <= r.elapsed_ms
            empty = await nodes[5].get(addr_of("never stored"))
            assert empty.values == () and empty.first_ms is None
            st = nodes[3].status()
            assert st["node_id"] == nodes[3].node.node_id.hex() and st["peers"] >= 1
            assert st["stored_values"] >= 1 and isinstance(st["counters"], dict)
        finally:
            await stop_all(nodes)

    run(main())


def test_many_values_per_address_are_paged(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 6)
        try:
            key = addr_of("paged")
            values = [bytes([i]) * 400 for i in range(12)]  # 4.8 kB: needs several 1,400-byte datagrams
            for i, v in enumerate(values):
                assert await nodes[i % 6].put(key, v) >= 1
            r = await nodes[5].get(key)
            assert sorted(r.values) == sorted(values)
            limited = await nodes[2].get(key, limit=5)
            assert len(limited.values) == 5 and set(limited.values) <= set(values)
        finally:
            await stop_all(nodes)

    run(main())


def test_a_lone_node_is_a_swarm_of_one(tmp_path: Path) -> None:
    """Not started: SwarmStopped. Started with no peer: puts are kept locally (0 replicas, no error) and
    gets answer from the local store (test_net_alone.py has the hand-over to a later peer)."""
    async def main() -> None:
        node = UdpSwarm(("127.0.0.1", 0), tmp_path / "lone", config=CONFIG)
        with pytest.raises(SwarmStopped):
            await node.get(addr_of("x"))
        await node.start()
        try:
            assert await node.put(addr_of("x"), b"v") == 0
            assert (await node.get(addr_of("x"))).values == (b"v",)
            assert (await node.get(addr_of("nothing here"))).values == ()
            assert node.status()["running"] is True
        finally:
            await node.stop()
        assert node.status()["running"] is False
        await node.stop()  # idempotent

    run(main())


def test_restart_keeps_identity_values_and_rejoins_from_saved_peers(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 6)
        key = addr_of("restart")
        await nodes[1].put(key, b"durable-1")
        await nodes[4].put(key, b"durable-2")
        ids = [n.node_id_hex for n in nodes]
        ports = [n.address[1] for n in nodes]
        await stop_all(nodes, graceful=False)
        # same data dirs and ports, NO bootstrap list: the saved peers.json must be enough
        again = [UdpSwarm(("127.0.0.1", p), tmp_path / ("n%d" % i), config=CONFIG) for i, p in enumerate(ports)]
        try:
            await asyncio.gather(*(node.start() for node in again))  # together: each finds the others up
            assert [n.node_id_hex for n in again] == ids
            assert sum(n.status()["stored_values"] for n in again) >= 2 * 5
            r = await again[0].get(key)
            assert sorted(r.values) == [b"durable-1", b"durable-2"]
        finally:
            await stop_all(again)

    run(main())


def test_graceful_leave_hands_values_to_the_remaining_nodes(tmp_path: Path) -> None:
    async def main() -> None:
        config = SwarmConfig(rate_limit_key="addr", k=3)
        nodes = await start_swarm(tmp_path, 10, config)
        key = addr_of("leave")
        await nodes[0].put(key, b"handed-over")
        holders = [n for n in nodes if n.store is not None and n.store.count(key)]
        assert 1 <= len(holders) <= 5
        try:
            for n in holders:
                await n.stop(graceful=True)
            rest = [n for n in nodes if n.running]
            assert rest
            r = await rest[-1].get(key)
            assert r.values == (b"handed-over",)
        finally:
            await stop_all(nodes)

    run(main())


def test_hostile_datagrams_are_dropped_and_counted(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 3)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        try:
            target = nodes[1].address
            junk = [b"", b"\x00", b"\xff" * 50, b"\x93\x01\x02", b"\xdc\xff\xff", b"A" * 1500, bytes(range(256))]
            for data in junk * 3:
                sock.sendto(data, target)
            await asyncio.sleep(0.2)
            counters = nodes[1].status()["counters"]
            drops = sum(v for k, v in counters.items() if k.startswith("drop"))
            assert drops >= len(junk) * 3 - 3, counters  # an empty datagram may not even be delivered
            assert counters.get("driver_errors", 0) == 0
            key = addr_of("after junk")
            await nodes[0].put(key, b"v")
            assert (await nodes[1].get(key)).values == (b"v",)
        finally:
            sock.close()
            await stop_all(nodes)

    run(main())


def test_validator_refuses_values_locally_and_on_remote_nodes(tmp_path: Path) -> None:
    from qis_gateway.swarm.errors import SwarmUsageError

    def only_good(address: bytes, value: bytes) -> bool:
        if value.startswith(b"raise"):
            raise ValueError("a verifier that raises counts as a rejection")
        return value.startswith(b"good")

    async def main() -> None:
        lax = UdpSwarm(("127.0.0.1", 0), tmp_path / "lax", config=CONFIG)  # no validator: stores anything
        await lax.start()
        strict = []
        for i in range(4):
            node = UdpSwarm(("127.0.0.1", 0), tmp_path / ("s%d" % i), [lax.address], config=CONFIG,
                            validator=only_good)
            await node.start()
            strict.append(node)
        try:
            key = addr_of("validated")
            with pytest.raises(SwarmUsageError):
                await strict[0].put(key, b"bad value")
            with pytest.raises(SwarmUsageError):
                await strict[0].put(key, b"raise please")
            with pytest.raises(SwarmUnavailable):  # every peer refuses it
                await lax.put(key, b"bad from a lax node")
            assert sum(n.status()["counters"].get("drop_invalid_value", 0) for n in strict) >= 1
            assert await lax.put(key, b"good one") == len(strict)
            assert (await strict[2].get(key)).values == (b"good one",)
        finally:
            await stop_all([lax, *strict])

    run(main())


def test_peer_list_is_saved_while_running(tmp_path: Path) -> None:
    from qis_gateway.swarm.peers import load_peers

    async def main() -> None:
        nodes = await start_swarm(tmp_path, 3)
        watcher = UdpSwarm(("127.0.0.1", 0), tmp_path / "w", [nodes[0].address], config=CONFIG,
                           peers_save_interval_s=0.05)
        await watcher.start()
        try:
            await asyncio.sleep(0.2)
            saved = set(load_peers(tmp_path / "w"))  # written without a stop: survives a SIGKILL
            assert {n.address for n in nodes} <= saved
        finally:
            await stop_all([watcher, *nodes])

    run(main())


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_ipv6_loopback_swarm(tmp_path: Path) -> None:
    async def main() -> None:
        nodes: list[UdpSwarm] = []
        for i in range(3):
            node = UdpSwarm(("::1", 0), tmp_path / ("v6-%d" % i), [nodes[0].address] if nodes else [], config=CONFIG)
            await node.start()
            nodes.append(node)
        try:
            assert nodes[2].address[0] == "::1"
            key = addr_of("v6")
            assert await nodes[1].put(key, b"over v6") == 2
            assert (await nodes[2].get(key)).values == (b"over v6",)
        finally:
            await stop_all(nodes)

    run(main())
