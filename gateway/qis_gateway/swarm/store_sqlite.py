"""Durable value store for a swarm node: SQLite in WAL mode, one file per node.

How it works:
- One table ``value_rows(address, value, stored_s, expires_s)`` with a unique (address, value) index; the
  rowid keeps insertion order, so ``values()`` pages an address's values oldest first, the same order as
  the core's ``MemoryValueStore``.
- The core's clock is the driver's monotonic clock (``loop.time()``), which restarts from an arbitrary
  origin in every process. Stored times are in the *store's own clock*, which continues across restarts
  and never reads the wall clock after the store was first created: given ``now_s`` (the core's time at
  open), the store resumes at the latest instant it knows it was alive (the ``store_clock_s`` row of
  ``store_meta``, saved at every ``expire`` and at ``close``, or the newest ``stored_s``, whichever is
  later) and ``clock_offset_s`` becomes that instant minus ``now_s``. A Raspberry Pi without a real-time
  clock that ran 48 h behind and restarts with the right time therefore loses nothing (the wall-clock
  version deleted every value at the first maintenance tick). The price: time while the node is down does
  not count towards a value's lifetime (origins re-store their values every ``republish_interval_s``
  anyway, and packets carry their own signed creation time). A new store starts at ``clock_offset_s +
  now_s`` (the driver passes wall time there, so the column reads as unix time until a clock jump).
  Without ``now_s`` the fixed ``clock_offset_s`` is used (default 0: the core's times stored unchanged,
  as tests and the simulator want).
- WAL journal with ``synchronous=NORMAL``: every ``add`` is committed before it returns, or inside
  ``batch()`` when the batch ends: the node's own multi-value put commits before its STOREs are sent, and
  the UDP driver wraps each batch of received datagrams in one (udp.py: one commit for all the STOREs
  read together, made before their STORED answers are sent; a commit per value was ~40% of a holder's
  CPU under put load). So a value a peer was told is stored survives SIGKILL of the process (it may be
  lost only on power loss before the next checkpoint; pass ``synchronous="FULL"`` to trade write speed
  for that too).
- Checkpoints (copying the WAL into the database, with fsync) run in a background thread every
  ``checkpoint_interval_s`` on its own connection (PASSIVE: never blocks the writer), not inside ``add``,
  so the fsync never runs on the node's event loop (sqlite3 releases the GIL while it works). With SQLite's
  automatic checkpoint an ``add`` took p50 ~30 us but up to 17 ms when it checkpointed (measured here;
  this shared 2-core VM also shows multi-ms stalls from other load, so the gain is noisy to measure).
  ``checkpoint_interval_s=0`` restores SQLite's automatic checkpoints.
- The storage *policy* (caps, which value to evict) is the core's; ``evict_for(address)`` only carries out
  its rule: drop the value at ``address`` that expires first (ties: oldest inserted). ``coldest_address``
  is the in-memory segmented LRU of store.py (``AddressHeat``; after a restart every address starts on
  probation, in the order it was first stored).
- ``count`` and ``total`` are asked on every FIND_VALUE and STORE, so the store keeps them in memory
  (loaded at open, updated by every write; a profile of 64 nodes under put load showed ``count`` as a
  SELECT at ~30 us a call). ``values`` is served from a small LRU read cache of whole per-address value
  lists (at most ``cache_bytes``, default 4 MiB), updated on ``add`` and dropped on eviction/expiry: a
  profile of 1,000 gets on 64 nodes had the SELECT as the largest single cost (15 % of the CPU).

Errors: ``sqlite3`` errors are translated into :class:`StoreError` (a corrupt or unwritable file is our
operator's problem, never a peer's input).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from .core.store import AddressHeat

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS value_rows (
    address   BLOB NOT NULL,
    value     BLOB NOT NULL,
    stored_s  REAL NOT NULL,
    expires_s REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS value_rows_key ON value_rows (address, value);
CREATE INDEX IF NOT EXISTS value_rows_expiry ON value_rows (expires_s);
CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, number REAL NOT NULL);
"""

_SYNC_MODES = ("OFF", "NORMAL", "FULL")



@contextlib.contextmanager
def write_batch(db: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Several writes in one transaction: one commit at the end, made also when a write fails (what was
    written stays, as with a commit per write). Nested calls join the outer transaction. Used by this
    store and by the published-values file."""
    if db.in_transaction:
        yield
        return
    try:
        db.execute("BEGIN")
    except sqlite3.Error as exc:
        raise StoreError("cannot write %s: %s" % (path, exc)) from exc
    try:
        yield
    finally:
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError("cannot write %s: %s" % (path, exc)) from exc

class StoreError(Exception):
    """The SQLite value store could not be opened, read or written (message says which file and why)."""


class SqliteValueStore:
    """``ValueStore`` kept in ``path`` (created with its parent directory if missing)."""

    def __init__(self, path: Path, clock_offset_s: float = 0.0, synchronous: str = "NORMAL",
                 cache_bytes: int = 4 << 20, checkpoint_interval_s: float = 2.0, now_s: float | None = None) -> None:
        if synchronous.upper() not in _SYNC_MODES:
            raise ValueError("synchronous must be one of %s, not %r" % (", ".join(_SYNC_MODES), synchronous))
        self.path = Path(path)
        self.clock_offset_s = float(clock_offset_s)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=%s" % synchronous.upper())
            self._db.executescript(_SCHEMA)
            if checkpoint_interval_s > 0:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError("cannot open value store %s: %s (check the data directory)" % (self.path, exc)) from exc
        self._closed = False
        if now_s is not None:
            self.clock_offset_s = self._resume_clock(float(now_s))
        self._last_now_s = now_s
        self._counts: dict[bytes, int] = {}
        self._total = 0
        self._heat = AddressHeat()
        self._reload_counts()
        self.cache_bytes = max(0, int(cache_bytes))
        self._cache: OrderedDict[bytes, list[bytes]] = OrderedDict()
        self._cache_size = 0
        self.checkpoints = 0
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_interval_s > 0:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(float(checkpoint_interval_s),),
                name="sqlite-checkpoint %s" % self.path.name, daemon=True,
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, interval_s: float) -> None:
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("checkpoint thread for %s could not open it: %s", self.path, exc)
            return
        try:
            while not self._stop.wait(interval_s):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # e.g. busy: try again next interval
                    log.debug("checkpoint of %s skipped: %s", self.path, exc)
        finally:
            db.close()

    def _cache_drop(self, key: bytes | None = None) -> None:
        if key is None:
            self._cache.clear()
            self._cache_size = 0
            return
        vals = self._cache.pop(key, None)
        if vals is not None:
            self._cache_size -= sum(len(v) for v in vals)

    def _cache_put(self, key: bytes, vals: list[bytes]) -> None:
        size = sum(len(v) for v in vals)
        if size > self.cache_bytes:
            return
        self._cache[key] = vals
        self._cache_size += size
        while self._cache_size > self.cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cache_size -= sum(len(v) for v in old)

    def _resume_clock(self, now_s: float) -> float:
        """The offset that makes the store's clock continue from the last instant it was alive."""
        rows = self._query("SELECT number FROM store_meta WHERE name = 'store_clock_s'", ())
        newest = self._query("SELECT MAX(stored_s) FROM value_rows", ())[0][0]
        known = [float(x) for x in (rows[0][0] if rows else None, newest) if x is not None]
        if not known:
            return self.clock_offset_s  # a new store: start from the caller's offset (wall time)
        resumed = max(known)
        log.debug("value store %s resumes its clock at %.3f", self.path, resumed)
        return resumed - now_s

    def _save_clock(self, now_s: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO store_meta (name, number) VALUES ('store_clock_s', ?)",
                         (now_s + self.clock_offset_s,))

    def _reload_counts(self) -> None:
        rows = self._query("SELECT address, COUNT(*) FROM value_rows GROUP BY address ORDER BY MIN(rowid)", ())
        self._counts = {bytes(a): int(n) for a, n in rows}
        self._total = sum(self._counts.values())
        self._heat.keep_only(self._counts)

    # -- ValueStore protocol -------------------------------------------------------------------------
    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Several writes in one transaction (``write_batch``)."""
        return write_batch(self._db, self.path)

    def add(self, address: bytes, value: bytes, now_s: float, expires_s: float) -> bool:
        """Store ``value`` under ``address``; False (and the expiry refreshed) if it was already held."""
        off = self.clock_offset_s
        self._last_now_s = now_s
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO value_rows (address, value, stored_s, expires_s) VALUES (?, ?, ?, ?)",
                (bytes(address), bytes(value), now_s + off, expires_s + off),
            )
            if cur.rowcount == 1:
                key = bytes(address)
                n = self._counts[key] = self._counts.get(key, 0) + 1
                if n == 1:
                    self._heat.stored(key)
                self._total += 1
                cached = self._cache.get(key)
                if cached is not None:  # keep the cached list in rowid (insertion) order
                    cached.append(bytes(value))
                    self._cache_size += len(value)
                    if self._cache_size > self.cache_bytes:
                        self._cache_drop(key)
                return True
            self._db.execute(
                "UPDATE value_rows SET expires_s = MAX(expires_s, ?) WHERE address = ? AND value = ?",
                (expires_s + off, bytes(address), bytes(value)),
            )
            return False
        except sqlite3.Error as exc:
            raise StoreError("cannot write value store %s: %s" % (self.path, exc)) from exc

    def values(self, address: bytes, limit: int, offset: int = 0) -> list[bytes]:
        """Up to ``limit`` values held for ``address``, oldest first, skipping the first ``offset``."""
        if limit <= 0:
            return []
        key = bytes(address)
        start = max(0, int(offset))
        cached = self._cache.get(key)
        if cached is None:
            if key not in self._counts:
                return []
            rows = self._query("SELECT value FROM value_rows WHERE address = ? ORDER BY rowid", (key,))
            cached = [bytes(r[0]) for r in rows]
            self._cache_put(key, cached)
        else:
            self._cache.move_to_end(key)
        self._heat.read(key)
        return cached[start : start + int(limit)]

    def count(self, address: bytes) -> int:
        return self._counts.get(bytes(address), 0)

    def total(self) -> int:
        return self._total

    def expire(self, now_s: float) -> int:
        """Delete every value whose expiry is at or before ``now_s``; returns how many were deleted."""
        self._last_now_s = now_s
        try:
            cur = self._db.execute("DELETE FROM value_rows WHERE expires_s <= ?", (now_s + self.clock_offset_s,))
            self._save_clock(now_s)
        except sqlite3.Error as exc:
            raise StoreError("cannot expire values in %s: %s" % (self.path, exc)) from exc
        dropped = max(0, cur.rowcount)
        if dropped:
            self._reload_counts()
            self._cache_drop()
        return dropped

    def evict_for(self, address: bytes) -> None:
        """Make room at ``address``: drop its value that expires first (no-op when it holds none)."""
        key = bytes(address)
        try:
            rows = self._db.execute(
                "DELETE FROM value_rows WHERE rowid = (SELECT rowid FROM value_rows WHERE address = ? "
                "ORDER BY expires_s, rowid LIMIT 1) RETURNING value",
                (key,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("cannot evict from %s: %s" % (self.path, exc)) from exc
        if rows:
            self._removed(key, bytes(rows[0][0]))

    def _removed(self, key: bytes, value: bytes) -> None:
        # The cached list loses the value (not the whole list: a holder at its per-signer quota removes a
        # value for every one it adds, and reading the address back each time was 10% of its CPU).
        cached = self._cache.get(key)
        if cached is not None:
            try:
                cached.remove(value)
                self._cache_size -= len(value)
            except ValueError:
                self._cache_drop(key)
        self._total -= 1
        left = self._counts.get(key, 1) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)
            self._heat.gone(key)

    def addresses(self) -> list[bytes]:
        return sorted(self._counts)

    def held(self, address: bytes) -> list[bytes]:
        """All values at ``address``, oldest first (for the storage policy; not counted as a read)."""
        key = bytes(address)
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached)
        if key not in self._counts:
            return []
        rows = self._query("SELECT value FROM value_rows WHERE address = ? ORDER BY rowid", (key,))
        cached = [bytes(r[0]) for r in rows]
        self._cache_put(key, cached)
        return list(cached)

    def remove(self, address: bytes, value: bytes) -> bool:
        key = bytes(address)
        try:
            cur = self._db.execute("DELETE FROM value_rows WHERE address = ? AND value = ?", (key, bytes(value)))
        except sqlite3.Error as exc:
            raise StoreError("cannot remove from %s: %s" % (self.path, exc)) from exc
        if cur.rowcount != 1:
            return False
        self._removed(key, bytes(value))
        return True

    def coldest_address(self) -> bytes | None:
        return self._heat.coldest()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join(5.0)
        try:
            if self._last_now_s is not None:
                self._save_clock(self._last_now_s)
        except sqlite3.Error as exc:
            log.warning("could not save the clock of value store %s: %s", self.path, exc)
        try:
            self._db.close()  # the last connection to close checkpoints the WAL into the database
        except sqlite3.Error as exc:  # closing must not mask the caller's own shutdown path
            log.warning("closing value store %s failed: %s", self.path, exc)

    # -- extras (not part of the protocol) ------------------------------------------------------------
    def resync(self) -> None:
        """After a failed commit (disk full, I/O error): drop an open transaction and rebuild the in-memory
        counts and cache from what the file really holds."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback of value store %s failed: %s", self.path, exc)
        self._cache_drop()
        self._reload_counts()

    def expires_at(self, address: bytes, value: bytes) -> float | None:
        """The expiry of one held value in the core's clock, or None when it is not held."""
        rows = self._query(
            "SELECT expires_s FROM value_rows WHERE address = ? AND value = ?", (bytes(address), bytes(value))
        )
        return None if not rows else float(rows[0][0]) - self.clock_offset_s

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError("cannot read value store %s: %s" % (self.path, exc)) from exc
