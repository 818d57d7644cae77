"""One SQLite connection per thread on one database file, and short ``BEGIN IMMEDIATE`` transactions.

Shared by the query registry and the camera store (the CLI, the API threads and the agent use them
at once); each thread keeps its own connection, so no connection crosses threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agent.sqlite_files import connect_read_only


class ThreadLocalSQLite:
    """Connections to ``path``, one per thread, each set up with ``pragmas`` (``"journal_mode=WAL"``).

    Args:
        path: the database file.
        pragmas: run as ``PRAGMA <pragma>`` on each new connection, in order.
        rows: return rows as :class:`sqlite3.Row` (by column name) instead of tuples.
        timeout_s: how long a statement waits for another connection's lock.
        read_only: connect with :func:`connect_read_only` (``journal_mode`` pragmas are left out).
    """

    def __init__(
        self,
        path: Path,
        pragmas: Sequence[str],
        *,
        rows: bool = False,
        timeout_s: float = 10.0,
        read_only: bool = False,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.pragmas = tuple(p for p in pragmas if not (read_only and p.startswith("journal_mode")))
        self.rows = rows
        self.timeout_s = timeout_s
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self.read_only:
                db = connect_read_only(self.path, timeout_s=self.timeout_s)
                db.isolation_level = None
            else:
                db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            if self.rows:
                db.row_factory = sqlite3.Row
            for pragma in self.pragmas:
                db.execute(f"PRAGMA {pragma}")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on this thread's connection; ``ROLLBACK`` on any error."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
