"""The state's SQLite files before a connection writes them: read-only access, and the check that
refuses a source-of-truth database whose data is gone.

Read-only: commands that only read (``query list``, ``alerts dead-letters``, ``search``) must work on
a folder they cannot write, a read-only mount for example, where a WAL database cannot even be read
the usual way because SQLite wants to create its shared-memory file beside it.

The check: the query registry and the alert outbox are the source of truth. SQLite opens an empty
file as a new, empty database and would go on with it, and reports a damaged page only when a
statement reaches it (in the middle of a run). :func:`database_problem` finds both before anything
is written, so the start can refuse with one line and leave the file as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

# sqlite3 result codes (``sqlite3.Error.sqlite_errorcode``, primary code in the low byte) of a file
# that is not, or no longer, a database
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def is_corrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "malformed" or "not a database" error."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return code in {SQLITE_CORRUPT, SQLITE_NOTADB}


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


def database_problem(path: Path) -> str | None:
    """Why the database ``path`` cannot be opened without losing what it held, or None.

    None also for a file that does not exist yet (it is created) and for faults the normal open
    reports itself (a folder, no permission). Reads only, through :func:`connect_read_only`; a
    ``PRAGMA quick_check`` reads every page (about 0.3 s for 150 MB in the page cache).
    """
    wal = path.with_name(path.name + "-wal")
    if not path.exists():
        if wal.is_file() and wal.stat().st_size > 0:
            return f"is missing, but {wal.name} beside it holds changes to it"
        return None
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        return "is empty (0 bytes): what it held is gone"
    try:
        db = connect_read_only(path)
        try:
            found = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            return f"is damaged ({exc})"
        return None
    if found != ["ok"]:
        lines = (line.strip() for row in found for line in row.splitlines())
        problems = "; ".join(line for line in lines if line and not line.startswith("***"))
        return f"is damaged ({problems[:300]})"
    return None
