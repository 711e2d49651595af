"""Values this node originated, kept on disk so that republishing survives a restart.

Why: replicas drop a value `value_ttl_s` after it was last stored, and only the origin re-stores it (every
`republish_interval_s`, Kademlia paper section 2.5). The core keeps its list of own values in memory, so
without this file a gateway restart (a systemd restart, an update, a power cut) silently ended the life of
every outcome packet it had stored: they expired on the replicas within a day. `UdpSwarm` records every
value it puts here and hands the list back to the core at start (`SwarmNode.adopt_published`). The newest
`max_values` are kept, the same bound the core applies in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

FILE = "published.sqlite3"


class PublishedValues:
    def __init__(self, path: Path, max_values: int) -> None:
        self.max_values = max_values
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS published (id BLOB PRIMARY KEY, address BLOB NOT NULL,"
                        " value BLOB NOT NULL, added_s REAL NOT NULL)")

    def add(self, address: bytes, value: bytes, now_s: float) -> None:
        key = hashlib.sha256(address + value).digest()
        self.db.execute("INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?)", (key, address, value, now_s))
        self.db.execute("DELETE FROM published WHERE id NOT IN (SELECT id FROM published ORDER BY added_s DESC,"
                        " rowid DESC LIMIT ?)", (self.max_values,))

    def all(self) -> list[tuple[bytes, bytes]]:
        """Oldest first, so the core's own bound drops the same values this file would."""
        rows = self.db.execute("SELECT address, value FROM published ORDER BY added_s, rowid")
        return [(bytes(a), bytes(v)) for a, v in rows]

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM published").fetchone()[0])

    def close(self) -> None:
        self.db.close()
