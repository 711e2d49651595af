"""SqliteValueStore: the ValueStore contract, expiry, eviction, and durability across restarts and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from qis_gateway.swarm.store_sqlite import SqliteValueStore, StoreError

A = bytes(range(32))
B = bytes(reversed(range(32)))


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteValueStore(tmp_path / "values.sqlite3")
    yield s
    s.close()


def test_add_is_idempotent_and_refreshes_expiry(store: SqliteValueStore) -> None:
    assert store.add(A, b"one", now_s=0.0, expires_s=10.0) is True
    assert store.add(A, b"one", now_s=5.0, expires_s=20.0) is False
    assert store.count(A) == 1
    assert store.expires_at(A, b"one") == 20.0
    # an older expiry never shortens a held value
    assert store.add(A, b"one", now_s=6.0, expires_s=8.0) is False
    assert store.expires_at(A, b"one") == 20.0


def test_values_pages_in_insertion_order(store: SqliteValueStore) -> None:
    vals = [b"v%02d" % i for i in range(7)]
    for v in vals:
        store.add(A, v, 0.0, 100.0)
    store.add(B, b"other", 0.0, 100.0)
    assert store.values(A, limit=3) == vals[:3]
    assert store.values(A, limit=3, offset=3) == vals[3:6]
    assert store.values(A, limit=3, offset=6) == vals[6:]
    assert store.values(A, limit=0) == []
    assert store.count(A) == 7 and store.count(B) == 1 and store.total() == 8
    assert store.addresses() == sorted([A, B])


def test_expire_removes_only_due_values(store: SqliteValueStore) -> None:
    store.add(A, b"short", 0.0, 10.0)
    store.add(A, b"long", 0.0, 50.0)
    store.add(B, b"due", 0.0, 10.0)
    assert store.expire(9.9) == 0
    assert store.expire(10.0) == 2
    assert store.values(A, 10) == [b"long"]
    assert store.count(B) == 0 and store.addresses() == [A]
    assert store.expire(100.0) == 1 and store.total() == 0


def test_evict_for_drops_the_value_expiring_first(store: SqliteValueStore) -> None:
    store.add(A, b"late", 0.0, 30.0)
    store.add(A, b"early", 0.0, 10.0)
    store.add(B, b"elsewhere", 0.0, 1.0)
    store.evict_for(A)
    assert store.values(A, 10) == [b"late"]
    assert store.count(B) == 1
    store.evict_for(bytes(32))  # nothing there: no-op
    assert store.total() == 2


def test_restart_keeps_values_and_remaining_lifetime(tmp_path: Path) -> None:
    path = tmp_path / "d" / "values.sqlite3"
    # process 1: core clock starts near 0, wall time 1000 -> offset 1000
    s1 = SqliteValueStore(path, clock_offset_s=1000.0)
    s1.add(A, b"p", now_s=5.0, expires_s=65.0)  # expires at wall 1065
    s1.close()
    # process 2, 30 s later: a new monotonic origin where core time 2000 is wall time 1030 -> offset -970
    s2 = SqliteValueStore(path, clock_offset_s=-970.0)
    assert s2.values(A, 10) == [b"p"]
    assert s2.expires_at(A, b"p") == pytest.approx(2035.0)  # 35 s left, as before the restart
    assert s2.expire(2034.0) == 0
    assert s2.expire(2035.0) == 1
    s2.close()


def test_values_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "values.sqlite3"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from qis_gateway.swarm.store_sqlite import SqliteValueStore
        s = SqliteValueStore(Path(sys.argv[1]))
        for i in range(50):
            s.add(bytes(32), b"value-%d" % i, 0.0, 1e9)
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "written" in proc.stdout
    s = SqliteValueStore(path)
    try:
        assert s.count(bytes(32)) == 50
        assert s.values(bytes(32), 2) == [b"value-0", b"value-1"]
    finally:
        s.close()


def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open value store"):
        SqliteValueStore(blocker / "values.sqlite3")
    with pytest.raises(ValueError, match="synchronous"):
        SqliteValueStore(tmp_path / "v.sqlite3", synchronous="SOMETIMES")


def test_closing_twice_is_harmless(tmp_path: Path) -> None:
    s = SqliteValueStore(tmp_path / "v.sqlite3")
    s.close()
    s.close()
    assert os.path.exists(tmp_path / "v.sqlite3")


@pytest.mark.parametrize("cache_bytes", [0, 40, 4 << 20])  # no read cache, a thrashing one, the default
def test_matches_the_memory_store_under_random_operations(tmp_path: Path, cache_bytes: int) -> None:
    import random

    from qis_gateway.swarm.core.store import MemoryValueStore

    rng = random.Random(7)
    mem, sql = MemoryValueStore(), SqliteValueStore(tmp_path / "v.sqlite3", cache_bytes=cache_bytes)
    addrs = [bytes([i]) * 32 for i in range(4)]
    now = 0.0
    try:
        for step in range(600):
            now += rng.random()
            op = rng.random()
            a = rng.choice(addrs)
            if op < 0.65:
                v, exp = b"v%d" % rng.randrange(40), now + rng.uniform(1, 60)
                assert sql.add(a, v, now, exp) == mem.add(a, v, now, exp), step
            elif op < 0.72:
                v = b"v%d" % rng.randrange(40)
                assert sql.remove(a, v) == mem.remove(a, v), step
            elif op < 0.8:
                sql.evict_for(a)
                mem.evict_for(a)
            else:
                assert sql.expire(now) == mem.expire(now), step
            assert sql.count(a) == mem.count(a) and sql.total() == mem.total(), step
            assert sorted(sql.addresses()) == sorted(mem.addresses()), step
            assert sql.held(a) == mem.held(a), step
            assert sql.coldest_address() == mem.coldest_address(), step
            if rng.random() < 0.5:  # reads promote an address out of probation (storage policy, point 6)
                assert sql.values(a, 100) == mem.values(a, 100), step
                off = rng.randrange(4)
                assert sql.values(a, 3, off) == mem.values(a, 3, off), step
        reopened = SqliteValueStore(tmp_path / "v.sqlite3")
        assert reopened.total() == mem.total()
        assert all(reopened.count(a) == mem.count(a) for a in addrs)
        reopened.close()
    finally:
        sql.close()


def test_checkpoints_run_in_the_background_not_in_add(tmp_path: Path) -> None:
    import time

    s = SqliteValueStore(tmp_path / "v.sqlite3", checkpoint_interval_s=0.02)
    try:
        assert s._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(300):
            s.add(bytes(32), b"value %d" % i, 0.0, 1e9)
        deadline = time.monotonic() + 5
        while s.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.checkpoints >= 1
    finally:
        s.close()
    assert not s._checkpointer.is_alive()
    again = SqliteValueStore(tmp_path / "v.sqlite3", checkpoint_interval_s=0)
    try:
        assert again.count(bytes(32)) == 300
        assert again._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's own again
    finally:
        again.close()


def test_the_store_clock_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    s = SqliteValueStore(path, clock_offset_s=1_000_000.0, now_s=5.0)  # new: starts at the caller's offset
    s.add(A, b"v", 5.0, 105.0)
    s.expire(50.0)  # a maintenance tick: the clock (1,000,050) is saved
    s.close()
    # Restarted with a wall clock 48 h later (or earlier) and a new monotonic origin: expiry unchanged.
    again = SqliteValueStore(path, clock_offset_s=1_000_000.0 + 172_800.0, now_s=7.0)
    try:
        assert again.expires_at(A, b"v") == pytest.approx(105.0 - 50.0 + 7.0)
        assert again.expire(7.0 + 54.0) == 0 and again.expire(7.0 + 55.0) == 1
    finally:
        again.close()
