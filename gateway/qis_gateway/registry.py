"""Device registry: which boards may talk to this gateway, their HMAC secrets and last sequence numbers.

How it works: one SQLite table `devices` (device_id primary key, site, 32-byte secret, last_seq, revoked,
created_s). `add` creates a fresh random secret (`secrets.token_bytes`), `revoke` keeps the row (so a
revoked id cannot be silently re-added with a new secret) but refuses its frames. `accept_seq` is the
replay guard: one UPDATE ... WHERE last_seq < ? that moves the stored sequence number forward and reports
whether it did, so the check and the write are a single atomic statement that survives restarts.
`last_seq` is -1 for a board that has sent nothing yet (boards count from 0).

`remove` deletes a board's row (its id can be registered again); `rekey` gives it a new secret and
resets its sequence number (the board needs the new device.json). The database holds every board's
secret, so it is created mode 0600 (SQLite gives its -wal and -shm files the same mode); a file that
cannot be opened is a one-line `RegistryError`, never a traceback.

`board_config` builds the board's `device.json` dict (docs/device.md; validated on the board by
`qis_device.config`).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qis.errors import TopicError
from qis.hmac256 import hmac_sha256
from qis.topics import check_id

from qis_gateway.sqlite_tx import Transaction

SECRET_BYTES = 32
NO_SEQ = -1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    secret BLOB NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT -1,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_s INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    site: str
    secret: bytes
    last_seq: int
    revoked: bool
    created_s: int = 0


class RegistryError(ValueError):
    """The registry file cannot be opened or written; the message names the file and the reason."""


class Registry:
    """SQLite-backed device registry. Safe to open from several processes (SQLite locking, WAL)."""

    def __init__(self, db_path: Path, create: bool = True) -> None:
        self.db_path = Path(db_path)
        _refuse_foreign_root(self.db_path)
        if not self.db_path.exists():
            if not create:
                raise RegistryError("registry %s does not exist (no board registered yet?)" % self.db_path)
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass
            except OSError as exc:
                raise RegistryError("cannot create registry %s: %s" % (self.db_path, exc.strerror)) from exc
        if not os.access(self.db_path, os.R_OK | os.W_OK) or not os.access(self.db_path.parent, os.W_OK | os.X_OK):
            raise RegistryError("cannot open registry %s: permission denied (run this as the user that owns it, "
                                "e.g. sudo -u %s)" % (self.db_path, _owner(self.db_path)))
        try:
            self._db = sqlite3.connect(str(self.db_path), timeout=10.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError("cannot open registry %s: %s" % (self.db_path, exc)) from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _record(row: tuple[Any, ...]) -> DeviceRecord:
        return DeviceRecord(device_id=row[0], site=row[1], secret=bytes(row[2]), last_seq=int(row[3]),
                            revoked=bool(row[4]), created_s=int(row[5]))

    def add(self, device_id: str, site: str, secret: bytes | None = None) -> DeviceRecord:
        """Register a board with a new random secret. ValueError if the id is invalid or already known."""
        try:
            check_id(device_id, "device id")
            check_id(site, "site")
        except TopicError as exc:
            raise ValueError(str(exc)) from exc
        if secret is None:
            secret = secrets.token_bytes(SECRET_BYTES)
        if len(secret) < 16:
            raise ValueError("a device secret must be at least 16 bytes")
        try:
            self._db.execute(
                "INSERT INTO devices (device_id, site, secret, last_seq, revoked, created_s) VALUES (?,?,?,?,0,?)",
                (device_id, site, bytes(secret), NO_SEQ, int(time.time())))
        except sqlite3.IntegrityError as exc:
            raise ValueError("device %r is already registered (revoke it or pick another id)" % device_id) from exc
        record = self.get(device_id)
        if record is None:  # pragma: no cover - just inserted
            raise RuntimeError("device %r vanished after insert" % device_id)
        return record

    def get(self, device_id: str) -> DeviceRecord | None:
        row = self._db.execute(
            "SELECT device_id, site, secret, last_seq, revoked, created_s FROM devices WHERE device_id = ?",
            (device_id,)).fetchone()
        return self._record(row) if row else None

    def list(self) -> list[DeviceRecord]:
        rows = self._db.execute(
            "SELECT device_id, site, secret, last_seq, revoked, created_s FROM devices ORDER BY site, device_id")
        return [self._record(r) for r in rows]

    def revoke(self, device_id: str) -> None:
        """Refuse the board's frames from now on. ValueError if it is unknown."""
        cur = self._db.execute("UPDATE devices SET revoked = 1 WHERE device_id = ?", (device_id,))
        if cur.rowcount == 0:
            raise ValueError("device %r is not registered" % device_id)

    def remove(self, device_id: str) -> None:
        """Delete the board's entry (its secret is gone; the id may be registered again)."""
        if self._db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,)).rowcount == 0:
            raise ValueError("device %r is not registered" % device_id)

    def rekey(self, device_id: str, secret: bytes | None = None) -> DeviceRecord:
        """Give the board a new random secret, reset its sequence number and un-revoke it."""
        secret = secrets.token_bytes(SECRET_BYTES) if secret is None else secret
        cur = self._db.execute("UPDATE devices SET secret = ?, last_seq = ?, revoked = 0 WHERE device_id = ?",
                               (bytes(secret), NO_SEQ, device_id))
        if cur.rowcount == 0:
            raise ValueError("device %r is not registered" % device_id)
        record = self.get(device_id)
        if record is None:  # pragma: no cover - just updated
            raise RuntimeError("device %r vanished after rekey" % device_id)
        return record

    def batch(self) -> Transaction:
        """One transaction (BEGIN IMMEDIATE .. COMMIT, ROLLBACK on an exception) around many calls, e.g.
        the `accept_seq` of a batch of frames: one fsync instead of one per frame (intake.py)."""
        return Transaction(self._db)

    def accept_seq(self, device_id: str, seq: int) -> bool:
        """Atomically record `seq` if it is newer than the last one; False means a replay (or unknown)."""
        cur = self._db.execute(
            "UPDATE devices SET last_seq = ? WHERE device_id = ? AND last_seq < ? AND revoked = 0",
            (seq, device_id, seq))
        return cur.rowcount == 1


def _refuse_foreign_root(db_path: Path) -> None:
    """root opening a registry that belongs to another account would leave root-owned files (the
    database, or its -wal/-shm) that the service can no longer write: refuse, naming the owner."""
    if os.geteuid() != 0:
        return
    probe = db_path if db_path.exists() else db_path.parent
    try:
        owner_uid = probe.stat().st_uid
    except OSError:
        return
    if owner_uid != 0:
        raise RegistryError("%s belongs to %s; run this as that user (sudo -u %s ...), not as root, so the "
                            "service can still write the registry" % (probe, _owner(probe), _owner(probe)))


def _owner(path: Path) -> str:
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        return "its owner"


def board_password(secret: bytes) -> str:
    """A board's MQTT password, derived from its HMAC secret (stable, so `device add` and
    `broker-config` agree without storing it): HMAC-SHA256(secret, "qis-mqtt-password"), 32 hex chars."""
    return hmac_sha256(secret, b"qis-mqtt-password").hex()[:32]


def board_config(record: DeviceRecord, broker_host: str, broker_port: int, schema_file: str,
                 **extra: Any) -> dict[str, Any]:
    """The board's device.json dict (docs/device.md, Board config). `extra` keys override or add top-level keys;
    `broker_user`/`broker_password`/`broker_tls` fill the broker section. By default the board logs in
    as its device id with `board_password` (what `qis-gateway broker-config` sets up); pass
    broker_user=None for an anonymous broker."""
    user = extra.pop("broker_user", record.device_id)
    password = extra.pop("broker_password", board_password(record.secret) if user == record.device_id else None)
    broker = {"host": broker_host, "port": int(broker_port), "user": user,
              "password": password if user else None, "tls": bool(extra.pop("broker_tls", False)),
              "keepalive_s": int(extra.pop("keepalive_s", 30))}
    config: dict[str, Any] = {
        "site": record.site,
        "device": record.device_id,
        "secret": record.secret.hex(),
        "broker": broker,
        "schema": schema_file,
        "fixed": {},
        "sensor": {"driver": "sim", "seed": 1},
        "interval_s": 10,
        "summary_timeout_s": 5,
        "queue_max": 200,
        "state_dir": ".",
    }
    config.update(extra)
    return config
