"""One SQLite connection per thread on one database file, and short ``BEGIN IMMEDIATE`` transactions.

Shared by the query registry and the camera store (the CLI, the API threads and the agent use them
at once); each thread keeps its own connection, so no connection crosses threads.

Also the read-only way in, for commands that only read (``query list``, ``alerts dead-letters``, ...)
on a folder they cannot write, a read-only mount for example: a WAL database cannot even be read
the usual way there, because SQLite wants to create its shared-memory file beside it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def writable_beside(path: Path) -> bool:
    """Whether SQLite can write ``path`` and its journal files: the folder (not on a read-only
    mount) and, when it exists, the file are writable by this process."""
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False
    return not path.exists() or os.access(path, os.W_OK)


def connect_read_only(
    path: Path, *, timeout_s: float = 10.0, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection that writes nothing, neither ``path`` nor its folder.

    ``mode=ro`` first: it reads a database a running agent is writing (with its write-ahead log).
    Where SQLite cannot open the shared-memory file (a read-only folder, no agent running) and no
    write-ahead log holds changes, ``immutable=1``: the file is read as it is. A log with changes
    that cannot be read there is an error that says so, not a silently older view.

    Raises:
        sqlite3.Error: the file is missing or cannot be read; the message says which.
    """
    if not path.is_file():
        raise sqlite3.OperationalError(f"no database file at {path}")
    uri = path.absolute().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=check_same_thread)
    try:
        db.execute("PRAGMA schema_version").fetchone()  # opens the file (and its WAL index) now
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if exc.sqlite_errorcode != sqlite3.SQLITE_CANTOPEN:
            raise
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise sqlite3.OperationalError(
            f"{path} has changes in {wal.name} that cannot be read in a folder this process cannot write "
            "(open it once where the folder is writable)"
        )
    db = sqlite3.connect(
        f"{uri}?immutable=1", uri=True, timeout=timeout_s, check_same_thread=check_same_thread
    )
    try:
        db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


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
