"""The OpenDHT swarm backend on real UDP (127.0.0.1): same put/get contract as our own swarm."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opendht", reason="OpenDHT is an optional package (pip install 'opendht>=3.0')")

from qis_gateway.swarm.api import SwarmUnavailable  # noqa: E402
from qis_gateway.swarm.errors import SwarmUsageError  # noqa: E402
from qis_gateway.swarm_opendht import OpenDhtMissing, OpenDhtSwarm, dht_key, value_id  # noqa: E402

ADDRESS = bytes(range(32))


def good_only(address: bytes, value: bytes) -> bool:
    return value.startswith(b"good") and value.endswith(address[:2])


def packet(i: int, address: bytes = ADDRESS) -> bytes:
    return b"good-%d-" % i + address[:2]


async def start_swarm(root: Path, n: int, validator: Callable[[bytes, bytes], bool] | None = good_only,
                      network_id: int | None = None) -> list[OpenDhtSwarm]:
    kw = {"network_id": network_id} if network_id is not None else {}
    first = OpenDhtSwarm(("127.0.0.1", 0), root / "n0", validator=validator, **kw)
    await first.start()
    nodes = [first]
    for i in range(1, n):
        node = OpenDhtSwarm(("127.0.0.1", 0), root / ("n%d" % i), bootstrap=[first.address], validator=validator,
                            **kw)
        await node.start()
        nodes.append(node)
    await asyncio.sleep(0.5)  # let the routing tables fill
    return nodes


@contextlib.asynccontextmanager
async def swarm_of(root: Path, n: int = 6) -> AsyncIterator[list[OpenDhtSwarm]]:
    nodes = await start_swarm(root, n)
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_key_mapping_is_the_address_prefix() -> None:
    assert dht_key(ADDRESS) == ADDRESS[:20]
    with pytest.raises(SwarmUsageError):
        dht_key(b"short")
    assert value_id(b"x") == value_id(b"x") != value_id(b"y")


def test_values_put_on_one_node_are_found_from_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with swarm_of(tmp_path) as swarm:
            for i in range(5):
                assert await swarm[1].put(ADDRESS, packet(i)) >= 1
            result = await swarm[5].get(ADDRESS)
            assert sorted(result.values) == sorted(packet(i) for i in range(5))
            assert result.first_ms is not None and result.elapsed_ms >= result.first_ms
    run(scenario())


def test_putting_the_same_packet_twice_does_not_duplicate_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with swarm_of(tmp_path) as swarm:
            await swarm[1].put(ADDRESS, packet(1))
            await swarm[2].put(ADDRESS, packet(1))
            assert (await swarm[3].get(ADDRESS)).values == (packet(1),)
    run(scenario())


def test_values_the_validator_refuses_never_come_back(tmp_path: Path) -> None:
    """A Byzantine node (no validator) stores garbage and foreign-address values at our key: get drops them."""
    async def scenario() -> None:
        async with swarm_of(tmp_path) as swarm:
            rogue = OpenDhtSwarm(("127.0.0.1", 0), tmp_path / "rogue", bootstrap=[swarm[0].address], validator=None)
            await rogue.start()
            try:
                await asyncio.sleep(0.3)
                await rogue.put(ADDRESS, b"tampered")
                other = bytes(reversed(ADDRESS))
                await rogue.put(ADDRESS, packet(9, other))  # valid-looking packet for another address
                await swarm[1].put(ADDRESS, packet(1))
                result = await swarm[4].get(ADDRESS)
                assert result.values == (packet(1),)
                assert swarm[4].status()["counters"]["rejected"] >= 2
            finally:
                await rogue.stop()
    run(scenario())


def test_put_refuses_an_invalid_value_locally(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with swarm_of(tmp_path) as swarm:
            with pytest.raises(SwarmUsageError):
                await swarm[1].put(ADDRESS, b"not a packet")
    run(scenario())


def test_a_lone_node_reports_unavailable_so_the_gateway_queues(tmp_path: Path) -> None:
    async def scenario() -> None:
        lone = OpenDhtSwarm(("127.0.0.1", 0), tmp_path / "lone", validator=good_only, op_timeout_s=5)
        await lone.start()
        try:
            with pytest.raises(SwarmUnavailable):
                await lone.put(ADDRESS, packet(1))
            assert lone.status()["own_values"] == 1  # kept for republishing
        finally:
            await lone.stop()
    run(scenario())


def test_own_values_are_republished_after_a_restart(tmp_path: Path) -> None:
    """OpenDHT forgets values after 10 minutes and on restart; the origin re-puts what it stored."""
    async def scenario() -> None:
        nodes = await start_swarm(tmp_path / "a", 4)
        await nodes[1].put(ADDRESS, packet(7))
        for node in nodes:
            await node.stop()
        # A new swarm; node 1 restarts from its data directory and republishes at start.
        fresh = await start_swarm(tmp_path / "b", 3)
        origin = OpenDhtSwarm(("127.0.0.1", 0), tmp_path / "a" / "n1", bootstrap=[fresh[0].address],
                              validator=good_only)
        await origin.start()
        try:
            async def found() -> bool:
                return (await fresh[2].get(ADDRESS)).values == (packet(7),)
            for _ in range(40):
                if await found():
                    break
                await asyncio.sleep(0.25)
            assert await found()
            assert origin.status()["counters"]["republished"] >= 1
        finally:
            await origin.stop()
            for node in fresh:
                await node.stop()
    run(scenario())


def test_swarms_on_other_network_ids_stay_apart(tmp_path: Path) -> None:
    async def scenario() -> None:
        ours = await start_swarm(tmp_path / "ours", 3)
        stranger = OpenDhtSwarm(("127.0.0.1", 0), tmp_path / "x", bootstrap=[ours[0].address], validator=good_only,
                                network_id=0x1234, op_timeout_s=5)
        await stranger.start()
        try:
            await ours[1].put(ADDRESS, packet(1))
            await asyncio.sleep(0.3)
            try:  # a node on another network finds nobody: an empty answer or no answer at all
                assert (await stranger.get(ADDRESS)).values == ()
            except SwarmUnavailable:
                pass
            assert (await ours[2].get(ADDRESS)).values == (packet(1),)
        finally:
            await stranger.stop()
            for node in ours:
                await node.stop()
    run(scenario())


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_opendht(name: str, *args: object, **kwargs: object) -> object:
        if name == "opendht":
            raise ImportError("No module named 'opendht'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "opendht", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_opendht)
    with pytest.raises(OpenDhtMissing, match=r"pip install 'opendht>=3.0'"):
        OpenDhtSwarm(("127.0.0.1", 0), tmp_path)
