"""One SQLite transaction as a context manager, for the gateway's own databases (state DB, registry).

`BEGIN IMMEDIATE` .. `COMMIT` (ROLLBACK on an exception, and after a failed COMMIT so no half-open
transaction is left behind); inside an already open transaction it is a savepoint, so calls nest in a
batch (intake.py commits a whole batch of frames at once).
"""

from __future__ import annotations

import sqlite3


class Transaction:
    """BEGIN IMMEDIATE .. COMMIT; inside an open transaction a savepoint (so calls nest in a batch)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._db.in_transaction
        self._db.execute("SAVEPOINT tx" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self._nested:
            if exc_type is not None:
                self._db.execute("ROLLBACK TO tx")
            self._db.execute("RELEASE tx")
        elif exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:  # e.g. the disk failed: leave no half-open transaction behind
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")

