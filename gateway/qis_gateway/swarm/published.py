"""Values this node originated, kept on disk (not in RAM) for republishing, across restarts too.

Why: replicas drop a value `value_ttl_s` after it was last stored, and only the origin re-stores it (every
`republish_interval_s`, Kademlia paper section 2.5). Kept only in memory, the list ended with every
gateway restart (a systemd restart, an update, a power cut): its outcome packets expired on the replicas
within a day. And in memory it cost up to `max_values_per_node` (100,000) values, ~26 MB, on a gateway
whose unit has MemoryHigh=96M.

How it works: `PublishedValues` is the on-disk `PublishedSet` (store.py). `UdpSwarm` hands it to its
`SwarmNode` (`published=`); the core adds every value it puts (`start_put`) and, once per maintenance
tick, reads the next slice of addresses to republish (`page`: ascending addresses after a cursor,
served by the `published_address` index), so nothing is loaded at start and the process holds only the
slice being re-stored. The newest `max_values` are kept (the oldest values, by `added_s`, are dropped
first; `published_age` index); the republishing pass `discard`s values no holder keeps any more (a
signer's beyond its per-address quota, housekeeping.py). `added_s` is wall time: the core's time plus
`clock_offset_s`, as in `SqliteValueStore`. SQLite errors are raised as `StoreError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

from .store_sqlite import StoreError, write_batch

FILE = "published.sqlite3"


class PublishedValues:
    """The SQLite ``PublishedSet``. Not thread-safe: use it from the thread that opened it."""

    __slots__ = ("path", "max_values", "clock_offset_s", "db", "_count", "_addresses")

    def __init__(self, path: Path, max_values: int, clock_offset_s: float = 0.0) -> None:
        self.path = Path(path)
        self.max_values = max_values
        self.clock_offset_s = float(clock_offset_s)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL, as the replica store: a commit survives a crash of the process without an fsync of
            # its own (4 ms per put on the event loop at FULL capped a gateway near 250 puts/s); a power
            # cut may lose the newest records, whose values then live on their replicas for value_ttl_s
            # without being republished by this origin.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA cache_size=-512")  # KiB: a slice per tick and appends need little
            self.db.execute("CREATE TABLE IF NOT EXISTS published (id BLOB PRIMARY KEY, address BLOB NOT NULL,"
                            " value BLOB NOT NULL, added_s REAL NOT NULL)")
            self.db.execute("CREATE INDEX IF NOT EXISTS published_address ON published (address)")
            self.db.execute("CREATE INDEX IF NOT EXISTS published_age ON published (added_s)")
            self._count = int(self.db.execute("SELECT COUNT(*) FROM published").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError("cannot open the published-values file %s: %s (check the data directory)"
                             % (self.path, exc)) from exc
        self._addresses: int | None = None  # distinct addresses, counted again after a change

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Several writes in one transaction (``store_sqlite.write_batch``)."""
        return write_batch(self.db, self.path)

    def add(self, address: bytes, value: bytes, now_s: float) -> None:
        key = hashlib.sha256(address + value).digest()
        try:
            cur = self.db.execute("INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?)",
                                  (key, address, value, now_s + self.clock_offset_s))
            if cur.rowcount != 1:
                return
            self._count += 1
            self._addresses = None
            if self._count > self.max_values:
                cur = self.db.execute("DELETE FROM published WHERE rowid IN (SELECT rowid FROM published"
                                      " ORDER BY added_s, rowid LIMIT ?)", (self._count - self.max_values,))
                self._count -= cur.rowcount
        except sqlite3.Error as exc:
            raise StoreError("cannot record a published value in %s: %s" % (self.path, exc)) from exc

    def discard(self, address: bytes, values: list[bytes]) -> None:
        if not values:
            return
        try:
            with self.batch():
                for value in values:
                    key = hashlib.sha256(address + value).digest()
                    self._count -= self.db.execute("DELETE FROM published WHERE id = ?", (key,)).rowcount
        except sqlite3.Error as exc:
            raise StoreError("cannot forget published values in %s: %s" % (self.path, exc)) from exc
        self._addresses = None

    def count_addresses(self) -> int:
        if self._addresses is None:
            try:
                row = self.db.execute("SELECT COUNT(DISTINCT address) FROM published").fetchone()
            except sqlite3.Error as exc:
                raise StoreError("cannot count published addresses in %s: %s" % (self.path, exc)) from exc
            self._addresses = int(row[0])
        return self._addresses

    def page(self, after: bytes | None, limit: int) -> list[tuple[bytes, list[bytes]]]:
        """Up to ``limit`` addresses in ascending byte order strictly after ``after`` (None: from the
        first), each with its values oldest first."""
        if limit <= 0:
            return []
        try:
            if after is None:
                rows = self.db.execute("SELECT DISTINCT address FROM published ORDER BY address LIMIT ?",
                                       (limit,)).fetchall()
            else:
                rows = self.db.execute("SELECT DISTINCT address FROM published WHERE address > ?"
                                       " ORDER BY address LIMIT ?", (after, limit)).fetchall()
            if not rows:
                return []
            out: list[tuple[bytes, list[bytes]]] = [(bytes(r[0]), []) for r in rows]
            at = {a: vals for a, vals in out}
            for a, v in self.db.execute("SELECT address, value FROM published WHERE address >= ? AND"
                                        " address <= ? ORDER BY address, added_s, rowid", (out[0][0], out[-1][0])):
                at[bytes(a)].append(bytes(v))
        except sqlite3.Error as exc:
            raise StoreError("cannot read published values from %s: %s" % (self.path, exc)) from exc
        return out

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self.db.close()
