"""UdpSwarm.put_many on real UDP sockets: several values at one address with one put (one lookup, paged
STOREs), far fewer datagrams than a put per value, and all or nothing on an invalid value."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import pytest
from qis_gateway.swarm.api import UdpSwarm
from qis_gateway.swarm.errors import SwarmUsageError

from .test_net_udp import addr_of, run, start_swarm, stop_all


def values(tag: str, n: int) -> list[bytes]:
    return [hashlib.sha256(b"%s %d" % (tag.encode(), i)).digest() * 9 for i in range(n)]  # 288 bytes each


def sent(node: UdpSwarm) -> int:
    return int(node.node.counters["sent"])


def test_put_many_stores_every_value_with_one_put(tmp_path: Path) -> None:
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 6)
        try:
            key, batch = addr_of("put-many"), values("many", 24)  # more than one STORE page per node
            before = sent(nodes[1])
            assert await nodes[1].put_many(key, batch) >= 4
            many = sent(nodes[1]) - before
            for reader in (nodes[0], nodes[5]):
                got = await reader.get(key, 100)
                assert sorted(got.values) == sorted(batch)
            other, singles = addr_of("put-one-by-one"), values("single", 24)
            before = sent(nodes[1])
            for v in singles:
                await nodes[1].put(other, v)
            one_by_one = sent(nodes[1]) - before
            assert many * 3 < one_by_one, (many, one_by_one)
        finally:
            await stop_all(nodes)

    run(main())


def test_put_many_refuses_all_when_one_value_is_invalid(tmp_path: Path) -> None:
    async def main() -> None:
        node = UdpSwarm(("127.0.0.1", 0), tmp_path / "n", validator=lambda address, value: value != b"bad")
        await node.start()
        try:
            key = addr_of("all-or-nothing")
            with pytest.raises(SwarmUsageError):
                await node.put_many(key, [b"good", b"bad"])
            assert (await node.get(key)).values == ()
            assert await node.put_many(key, [b"good", b"fine"]) == 0  # alone: kept here
            assert sorted((await node.get(key)).values) == [b"fine", b"good"]
        finally:
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_put_many_writes_its_values_in_one_commit_per_file(tmp_path: Path) -> None:
    async def main() -> None:
        node = UdpSwarm(("127.0.0.1", 0), tmp_path / "n")
        await node.start()
        try:
            statements: list[str] = []
            node.store._db.set_trace_callback(statements.append)
            node.published.db.set_trace_callback(statements.append)
            key, batch = addr_of("one-commit"), values("commit", 20)
            await node.put_many(key, batch)
            assert sum(1 for s in statements if s.strip().upper() == "COMMIT") == 2  # before: none, one implicit each
            for name in ("values.sqlite3", "published.sqlite3"):  # durable: another connection sees them
                with sqlite3.connect(str(tmp_path / "n" / name)) as db:
                    table = "value_rows" if name == "values.sqlite3" else "published"
                    assert db.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0] == 20
        finally:
            await node.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_every_node_that_keeps_a_value_tells_its_on_stored(tmp_path: Path) -> None:
    """What the gateway's lookup cache hears (evidence.py `heard`): the origin's own copy and each
    holder's, once each; a node with no listener still stores."""
    async def main() -> None:
        nodes = await start_swarm(tmp_path, 4)
        heard: dict[int, list[tuple[bytes, bytes]]] = {i: [] for i in range(3)}
        for i in range(3):
            nodes[i].on_stored = lambda address, value, i=i: heard[i].append((address, value))
        try:
            key, batch = addr_of("heard"), values("heard", 3)
            assert await nodes[0].put_many(key, batch) >= 3  # 4 nodes, k >= 4: every node holds it
            for i in range(3):
                assert sorted(v for a, v in heard[i] if a == key) == sorted(batch), i
            assert sorted((await nodes[3].get(key, 10)).values) == sorted(batch)
        finally:
            await stop_all(nodes)

    run(main())
