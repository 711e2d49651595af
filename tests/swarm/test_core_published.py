"""Published sets (the values a node originated): the in-memory default and the SQLite one behave alike
(ascending pages after a cursor, wrap-around slices, caps, discards), the SQLite one keeps nothing in Python memory,
and a node on it republishes from disk, stops at leave and starts again after a restart."""

from __future__ import annotations

import functools
import hashlib
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from qis_gateway.swarm.core.events import JoinDone, LeaveDone, PutDone
from qis_gateway.swarm.core.node import SwarmNode
from qis_gateway.swarm.core.store import MemoryPublishedSet, PublishedSet
from qis_gateway.swarm.published import PublishedValues

from .conftest import TEST_CONFIG, MemNet
from .test_core_node import record_republishes


def _addr(i: int) -> bytes:
    return hashlib.sha256(b"pub %d" % i).digest()


@pytest.fixture(params=["memory", "sqlite"])
def make_set(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[int], PublishedSet]:
    opened: list[PublishedSet] = []

    def make(max_values: int) -> PublishedSet:
        s: PublishedSet
        if request.param == "memory":
            s = MemoryPublishedSet(max_values)
        else:
            s = PublishedValues(tmp_path / ("p%d.sqlite3" % len(opened)), max_values)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def test_pages_ascend_after_the_cursor(make_set: Callable[[int], PublishedSet]) -> None:
    s = make_set(1000)
    for i in range(25):
        s.add(_addr(i), b"v%d" % i, float(i))
    s.add(_addr(3), b"second", 30.0)
    s.add(_addr(3), b"second", 31.0)  # already held: ignored
    assert len(s) == 26 and s.count_addresses() == 25
    ordered = sorted(_addr(i) for i in range(25))
    assert [a for a, _ in s.page(None, 10)] == ordered[:10]
    assert [a for a, _ in s.page(ordered[9], 10)] == ordered[10:20]
    assert [a for a, _ in s.page(ordered[9][:31] + b"\xff", 3)] == ordered[10:13]  # not a held address
    assert s.page(ordered[-1], 5) == [] and s.page(None, 0) == []
    assert dict(s.page(None, 25))[_addr(3)] == [b"v3", b"second"]
    walked: list[bytes] = []
    cursor = None
    while page := s.page(cursor, 4):  # a republish pass: every address once, in order
        walked += [a for a, _ in page]
        cursor = page[-1][0]
    assert walked == ordered


def test_discard_forgets_only_the_values_named(make_set: Callable[[int], PublishedSet]) -> None:
    s = make_set(1000)
    for i in range(5):
        s.add(_addr(0), b"a%d" % i, float(i))
    s.add(_addr(1), b"b", 9.0)
    s.discard(_addr(0), [b"a0", b"a2", b"never held"])
    s.discard(_addr(2), [b"a1"])  # an address not held: nothing happens
    assert dict(s.page(None, 10))[_addr(0)] == [b"a1", b"a3", b"a4"] and len(s) == 4
    s.discard(_addr(1), [b"b"])  # its last value: the address goes too
    assert s.count_addresses() == 1 and [a for a, _ in s.page(None, 10)] == [_addr(0)]
    s.add(_addr(0), b"a0", 20.0)  # put again: held again
    assert dict(s.page(None, 10))[_addr(0)] == [b"a1", b"a3", b"a4", b"a0"] and len(s) == 4


def test_memory_set_drops_the_oldest_address_whole(tmp_path: Path) -> None:
    s = MemoryPublishedSet(5)
    s.add(_addr(0), b"a", 0.0)
    s.add(_addr(0), b"b", 0.0)
    for i in range(1, 4):
        s.add(_addr(i), b"x", 0.0)
    s.add(_addr(4), b"y", 0.0)  # 6 values > 5: address 0 (first put) goes, both its values
    assert len(s) == 4 and _addr(0) not in dict(s.page(None, 10))
    one = MemoryPublishedSet(1)
    one.add(_addr(9), b"a", 0.0)
    one.add(_addr(9), b"b", 0.0)  # the newest address is never dropped, even over the cap
    assert len(one) == 2 and one.count_addresses() == 1


def test_sqlite_set_keeps_the_newest_values_and_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "published.sqlite3"
    s = PublishedValues(path, 5, clock_offset_s=1000.0)
    for i in range(8):
        s.add(_addr(i), b"v", float(i))
    assert len(s) == 5 and s.count_addresses() == 5
    s.close()
    again = PublishedValues(path, 5)
    assert len(again) == 5
    assert {a for a, _ in again.page(None, 10)} == {_addr(i) for i in range(3, 8)}
    (added,) = again.db.execute("SELECT MIN(added_s) FROM published").fetchone()
    assert added == 1003.0  # core time + clock offset: wall time on disk
    again.close()


def test_sqlite_set_holds_no_values_in_python_memory(tmp_path: Path) -> None:
    """Adding 2,000 x 300 B values: the in-memory set keeps them (~0.7 MB traced), the SQLite one keeps
    none (its page cache is SQLite's own, bounded by cache_size)."""
    def retained(s: PublishedSet) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(2000):  # each value is made here: only the set can keep it alive
                s.add(_addr(i), bytes([i % 251]) * 296 + b"%04d" % i, 0.0)
            return tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()

    memory = retained(MemoryPublishedSet(100_000))
    disk = PublishedValues(tmp_path / "p.sqlite3", 100_000)
    on_disk = retained(disk)
    assert len(disk) == 2000
    assert memory > 600_000
    assert on_disk < memory / 20, (on_disk, memory)
    disk.close()


def test_node_on_the_sqlite_set_republishes_from_disk_stops_at_leave_and_again_after_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = replace(TEST_CONFIG, value_ttl_s=100.0, republish_interval_s=20.0, maintenance_interval_s=5.0)
    net = MemNet(seed=8)
    nodes = net.build(6, cfg)
    path = tmp_path / "published.sqlite3"
    disk = PublishedValues(path, 1000)
    origin = net.add(cfg, node_cls=functools.partial(SwarmNode, published=disk))
    origin.bootstrap([nodes[0].test_addr], net.now)
    net.wait_for(JoinDone)
    for i in range(10):
        origin.start_put(_addr(i), b"own %d" % i, net.now)
    net.wait_for(PutDone, 10)
    assert origin.published is disk and len(disk) == 10 and disk.count_addresses() == 10
    started = record_republishes(monkeypatch, origin)
    net.run(until=net.now + 2 * cfg.republish_interval_s)  # first slice at +20 s, 3 addresses per tick
    assert {a for _, a in started} == {_addr(i) for i in range(10)}  # read back from disk
    origin.leave(net.now)
    net.wait_for(LeaveDone)
    started.clear()
    net.run(until=net.now + 2 * cfg.republish_interval_s)
    assert started == []
    disk.close()
    # A restart: a new node on the same file republishes its values again, nothing adopted by hand.
    net.dead.add(origin.test_addr)
    reopened = PublishedValues(path, 1000)
    assert len(reopened) == 10
    again = net.add(cfg, node_cls=functools.partial(SwarmNode, published=reopened), identity=origin.identity)
    again.bootstrap([nodes[1].test_addr], net.now)
    restart_s = net.now
    net.wait_for(JoinDone)
    restarted = record_republishes(monkeypatch, again)
    net.run(until=restart_s + cfg.republish_interval_s)
    assert {a for _, a in restarted} == {_addr(i) for i in range(10)}  # paced from the first tick
    assert min(t for t, _ in restarted) <= restart_s + cfg.maintenance_interval_s
    assert any(n.store.count(_addr(0)) for n in nodes)
    reopened.close()
