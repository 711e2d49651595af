"""The gateway's durable state: recent readings, frames already handled, and the outcome outbox (SQLite).

How it works: one SQLite file in WAL mode with synchronous=FULL, so a row is on disk when a call returns
and a SIGKILL right after loses nothing. Tables:

- `frames(device, seq, kind, digest)`: every board frame durably handled. A frame redelivered by the
  broker (its PUBACK never arrived) has the same device, seq and digest and is recognised as a
  duplicate instead of a replay.
- `readings(device, seq, schema_id, fields, vector, created_s)`: what an fp said, so a later outcome can
  be tied to it (fields give the addresses, the vector travels in the packet). Kept `reading_ttl_s`.
- `outbox(id, device, seq, level, address, packet, attempts, next_try_s, done_s)`: signed outcome
  packets waiting to be stored in the swarm. `due()` hands out undone rows whose retry time has come,
  oldest first; `mark_done` / `mark_retry` record the result (retry delay doubles up to a cap).
- `held(device, seq, digest, schema_id, fields, vector, label, value, weight, created_s)`: accepted
  outcomes not signed yet because the wall clock was clearly wrong (signing_clock.py). `release_held`
  moves one to the outbox, signed, once the clock is trustworthy; `created_s` here is the (wrong) clock
  at admission, kept for the record only.

Each `record_*` call writes its rows in one transaction (INSERT OR IGNORE, so doing it twice is harmless).
Inside `batch()` those become savepoints of the batch's one transaction, and one COMMIT (one fsync of
the WAL) makes the whole batch durable: the group commit of intake.py.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qis_gateway.sqlite_tx import Transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    device TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, digest BLOB NOT NULL,
    created_s REAL NOT NULL, PRIMARY KEY (device, seq));
CREATE TABLE IF NOT EXISTS readings (
    device TEXT NOT NULL, seq INTEGER NOT NULL, schema_id TEXT NOT NULL, fields TEXT NOT NULL,
    vector BLOB NOT NULL, created_s REAL NOT NULL, PRIMARY KEY (device, seq));
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, seq INTEGER NOT NULL, level INTEGER NOT NULL,
    address BLOB NOT NULL, packet BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_try_s REAL NOT NULL, created_s REAL NOT NULL, done_s REAL, UNIQUE (device, seq, level));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (done_s, next_try_s);
CREATE TABLE IF NOT EXISTS held (
    device TEXT NOT NULL, seq INTEGER NOT NULL, digest BLOB NOT NULL, schema_id TEXT NOT NULL,
    fields TEXT NOT NULL, vector BLOB NOT NULL, label TEXT NOT NULL, value REAL, weight REAL NOT NULL,
    created_s REAL NOT NULL, PRIMARY KEY (device, seq));
"""


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    seq: int
    schema_id: str
    fields: dict[str, str | int]
    vector: tuple[int, ...]
    created_s: float


@dataclass(frozen=True, slots=True)
class HeldOutcome:
    device: str
    seq: int
    digest: bytes
    schema_id: str
    fields: dict[str, str | int]
    vector: tuple[int, ...]
    label: str
    value: float | None
    weight: float


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    device: str
    seq: int
    level: int
    address: bytes
    packet: bytes
    attempts: int
    next_try_s: float = 0.0


class StateDB:
    """Durable gateway state (see module docstring). One instance per process; not thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- frames ---------------------------------------------------------------------------------------
    def frame_digest(self, device: str, seq: int) -> tuple[bytes, str] | None:
        """(digest, kind) of a handled frame; kind is "fp", "outcome" or "refused"."""
        row = self._db.execute("SELECT digest, kind FROM frames WHERE device = ? AND seq = ?",
                               (device, seq)).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def record_fp(self, device: str, seq: int, digest: bytes, schema_id: str, fields: dict[str, str | int],
                  vector: list[int], now_s: float) -> None:
        vec = bytes((q & 0xFF) for q in vector)
        text = json.dumps(fields, sort_keys=True)  # what may raise on odd input: before either write
        if self._db.in_transaction:
            # In a batch (intake.py) no savepoint of its own: SAVEPOINT + RELEASE doubled the cost of an
            # fp's writes (~17 -> 8 us). What can fail between the two inserts is SQLite itself, and that
            # rolls the whole batch back (the frames are redelivered), so the pair still lands together.
            self._insert_fp(device, seq, digest, schema_id, text, vec, now_s)
            return
        with self._tx():
            self._insert_fp(device, seq, digest, schema_id, text, vec, now_s)

    def _insert_fp(self, device: str, seq: int, digest: bytes, schema_id: str, fields: str, vec: bytes,
                   now_s: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?)", (device, seq, "fp", digest, now_s))
        self._db.execute("INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?)",
                         (device, seq, schema_id, fields, vec, now_s))

    def record_outcome(self, device: str, seq: int, digest: bytes, packets: list[tuple[int, bytes, bytes]],
                       now_s: float) -> None:
        """`packets`: (level, address, packet bytes) to store; all queued in one transaction."""
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?)",
                             (device, seq, "outcome", digest, now_s))
            for level, address, packet in packets:
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox (device, seq, level, address, packet, next_try_s, created_s)"
                    " VALUES (?,?,?,?,?,?,?)", (device, seq, level, address, packet, now_s, now_s))

    def record_held(self, device: str, seq: int, digest: bytes, reading: Reading, label: str, value: float | None,
                    weight: float, now_s: float) -> None:
        """An accepted outcome that may not be signed yet (the clock is wrong): the frame and what to sign."""
        vec = bytes((q & 0xFF) for q in reading.vector)
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?)",
                             (device, seq, "outcome", digest, now_s))
            self._db.execute("INSERT OR IGNORE INTO held VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (device, seq, digest, reading.schema_id, json.dumps(reading.fields, sort_keys=True),
                              vec, label, value, weight, now_s))

    def held(self, limit: int = 64) -> list[HeldOutcome]:
        """Held outcomes, oldest first."""
        rows = self._db.execute("SELECT device, seq, digest, schema_id, fields, vector, label, value, weight"
                                " FROM held ORDER BY created_s, device, seq LIMIT ?", (limit,))
        return [HeldOutcome(r[0], r[1], bytes(r[2]), r[3], json.loads(r[4]), _vector(r[5]), r[6], r[7], r[8])
                for r in rows]

    def held_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM held").fetchone()[0]

    def release_held(self, device: str, seq: int, packets: list[tuple[int, bytes, bytes]], now_s: float) -> None:
        """Queue a held outcome's signed packets and forget it as held, in one transaction (an empty
        `packets` drops it: it can no longer be signed)."""
        with self._tx():
            for level, address, packet in packets:
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox (device, seq, level, address, packet, next_try_s, created_s)"
                    " VALUES (?,?,?,?,?,?,?)", (device, seq, level, address, packet, now_s, now_s))
            self._db.execute("DELETE FROM held WHERE device = ? AND seq = ?", (device, seq))

    def newest_signed_s(self) -> float | None:
        """The newest `created_s` of the outbox (queued or stored): the newest time this gateway signed."""
        return self._db.execute("SELECT MAX(created_s) FROM outbox").fetchone()[0]

    def record_refused(self, device: str, seq: int, digest: bytes, now_s: float) -> None:
        """An authentic frame that was refused (e.g. unknown reading): remember it as handled."""
        self._db.execute("INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?)", (device, seq, "refused", digest, now_s))

    def reading(self, device: str, seq: int) -> Reading | None:
        row = self._db.execute("SELECT schema_id, fields, vector, created_s FROM readings WHERE device = ? AND seq = ?",
                               (device, seq)).fetchone()
        if row is None:
            return None
        return Reading(device, seq, row[0], json.loads(row[1]), _vector(row[2]), row[3])

    # -- outbox ---------------------------------------------------------------------------------------
    def due(self, now_s: float, limit: int = 16, after: tuple[float, int] | None = None) -> list[OutboxItem]:
        """Undone rows whose retry time has come, in (next_try_s, id) order; with `after`, only those past
        that position (the flusher's cursor: the rows before it are in flight or handed out already)."""
        if after is None:
            rows = self._db.execute(
                "SELECT id, device, seq, level, address, packet, attempts, next_try_s FROM outbox"
                " WHERE done_s IS NULL AND next_try_s <= ? ORDER BY next_try_s, id LIMIT ?", (now_s, limit))
        else:
            rows = self._db.execute(
                "SELECT id, device, seq, level, address, packet, attempts, next_try_s FROM outbox"
                " WHERE done_s IS NULL AND next_try_s <= ? AND (next_try_s > ? OR (next_try_s = ? AND id > ?))"
                " ORDER BY next_try_s, id LIMIT ?", (now_s, after[0], after[0], after[1], limit))
        return [OutboxItem(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6], r[7]) for r in rows]

    def next_due_s(self) -> float | None:
        row = self._db.execute("SELECT MIN(next_try_s) FROM outbox WHERE done_s IS NULL").fetchone()
        return row[0] if row else None

    def mark_done(self, item_id: int, now_s: float) -> None:
        self._db.execute("UPDATE outbox SET done_s = ?, attempts = attempts + 1 WHERE id = ?", (now_s, item_id))

    def mark_retry(self, item_id: int, now_s: float, min_s: float, max_s: float) -> float:
        """Schedule the next attempt (delay doubles per attempt up to max_s); return its time."""
        row = self._db.execute("SELECT attempts FROM outbox WHERE id = ?", (item_id,)).fetchone()
        attempts = row[0] if row else 0
        delay = min(max_s, min_s * (2 ** min(attempts, 30)))
        self._db.execute("UPDATE outbox SET attempts = attempts + 1, next_try_s = ? WHERE id = ?",
                         (now_s + delay, item_id))
        return now_s + delay

    def pending(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox WHERE done_s IS NULL").fetchone()[0]

    def stored(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outbox WHERE done_s IS NOT NULL").fetchone()[0]

    def prune(self, now_s: float, ttl_s: float) -> int:
        """Forget readings, frames and stored outbox rows older than ttl_s. Returns rows removed."""
        cutoff = now_s - ttl_s
        removed = 0
        with self._tx():
            for sql in ("DELETE FROM readings WHERE created_s < ?", "DELETE FROM frames WHERE created_s < ?",
                        "DELETE FROM outbox WHERE done_s IS NOT NULL AND done_s < ?"):
                removed += self._db.execute(sql, (cutoff,)).rowcount
        return removed

    @contextlib.contextmanager
    def marks(self) -> Iterator[None]:
        """One transaction of put results (`mark_done` / `mark_retry`) committed without an fsync of its own
        (synchronous=NORMAL for it): the flusher writes one ~10 times a second, each an fsync on the event
        loop at FULL. A SIGKILL loses nothing (the WAL is written); a power cut before the next FULL commit
        (the next batch of frames syncs the whole WAL) may lose the marks, and those packets are put again
        (holders keep one copy of identical bytes). Nested in an open transaction it is part of that one."""
        if self._db.in_transaction:
            with self.batch():
                yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.batch():
                yield
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def batch(self) -> Transaction:
        """One transaction around many calls: committed (durable) on leaving, rolled back on an exception."""
        return Transaction(self._db)

    def _tx(self) -> Transaction:
        return Transaction(self._db)


def _vector(blob: bytes) -> tuple[int, ...]:
    return tuple(b - 256 if b > 127 else b for b in bytes(blob))
