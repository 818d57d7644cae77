"""The durable outbox: alert events and their per-sink delivery state in one SQLite file.

An event is stored once (table ``alerts``) with one row per configured sink (table ``deliveries``),
in one transaction. A delivery stays ``pending`` until its sink acknowledged the event, so after a
crash or restart every unacknowledged event is sent again (at least once; receivers drop
duplicates by ``event_id``). The alerts table is also the alert history behind ``GET /alerts``.

Each thread uses its own connection (WAL mode, ``synchronous=FULL``); the schema version is kept in
``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` on open.

The outbox is the source of truth for undelivered events, so an existing file that is empty or
damaged is refused before anything is written (:func:`agent.sqlite_files.database_problem`): SQLite
would take an empty file for a new database and drop the events silently, and would report a damaged
page only when a statement reached it, mid-run.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.sqlite_files import connect_read_only, database_problem

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
BUSY_TIMEOUT_MS = 10_000
# Checkpoint the write-ahead log every ~400 KB and cut it back to 1 MB afterwards: at SQLite's default
# (4 MB) the log alone fills a small disk before its first checkpoint, and no write succeeds again.
WAL_AUTOCHECKPOINT_PAGES = 100
WAL_SIZE_LIMIT_BYTES = 1024 * 1024


class OutboxError(Exception):
    """The outbox database cannot be used (empty, damaged, written by a newer Watchword)."""


def _schema_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event TEXT NOT NULL,
            camera TEXT NOT NULL,
            query_id INTEGER NOT NULL,
            track_id INTEGER NOT NULL,
            started_at REAL NOT NULL,
            created_at REAL NOT NULL,
            payload TEXT NOT NULL,
            UNIQUE (alert_id, seq)
        )"""
    )
    conn.execute("CREATE INDEX alerts_started ON alerts (started_at)")
    conn.execute("CREATE INDEX alerts_camera ON alerts (camera, started_at)")
    conn.execute("CREATE INDEX alerts_query ON alerts (query_id, started_at)")
    conn.execute(
        f"""CREATE TABLE deliveries (
            event_row INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
            sink TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('{PENDING}', '{DELIVERED}', '{FAILED}')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            delivered_at REAL,
            PRIMARY KEY (sink, event_row)
        )"""
    )
    conn.execute(f"CREATE INDEX deliveries_pending ON deliveries (sink, event_row) WHERE state = '{PENDING}'")
    conn.execute("CREATE INDEX deliveries_event ON deliveries (event_row)")


def _schema_v2(conn: sqlite3.Connection) -> None:
    """Dead letters: a delivery in state ``failed`` records when it got there; one view lists them."""
    conn.execute("ALTER TABLE deliveries ADD COLUMN failed_at REAL")
    conn.execute(
        f"""CREATE VIEW dead_letters AS
            SELECT d.sink, d.event_row, a.alert_id, a.seq, a.event, a.camera, a.query_id,
                   d.attempts, d.last_error, d.failed_at
            FROM deliveries d JOIN alerts a ON a.id = d.event_row WHERE d.state = '{FAILED}'"""
    )


# MIGRATIONS[i] upgrades a database from schema version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_schema_v1, _schema_v2]
SCHEMA_VERSION = len(MIGRATIONS)


def _newer_schema(version: int) -> OutboxError:
    return OutboxError(
        f"the alerts database has schema version {version}, newer than this Watchword's "
        f"{SCHEMA_VERSION}; upgrade Watchword or use another database file"
    )


def check_schema(conn: sqlite3.Connection) -> int:
    """The schema version of a database opened read-only; :class:`OutboxError` unless it is current."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise _newer_schema(version)
    if version < SCHEMA_VERSION:
        raise OutboxError(
            f"the alerts database has schema version {version}, older than this Watchword's "
            f"{SCHEMA_VERSION}; it is upgraded when it is opened where its folder is writable"
        )
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Upgrade the schema to :data:`SCHEMA_VERSION`, one transaction per step; return the version."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise _newer_schema(version)
            if version == SCHEMA_VERSION:
                conn.execute("COMMIT")
                return version
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
            log.info("alerts database: schema upgraded to version %d", version + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise


@dataclass(frozen=True)
class PendingDelivery:
    """The oldest unacknowledged event of one sink."""

    event_row: int
    sink: str
    attempts: int
    next_attempt_at: float
    payload: dict[str, Any]


class Outbox:
    """Alert events and their delivery state in a SQLite file; safe to use from many threads.

    Args:
        path: the database file (its folder is created).
        read_only: open an existing database without writing anything, neither the file nor its
            folder (commands that only read, on a read-only mount too); writes then fail.

    Raises:
        OutboxError: the file exists but is empty or damaged (nothing is written then), or its
            schema is newer than this Watchword's.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        problem = database_problem(self.path)
        if problem is not None:
            raise OutboxError(
                f"the alerts database {problem}; nothing was changed: restore it from a backup, or move "
                "it (with any -wal file beside it) away to start a new alert history"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []  # (owner, conn)
        self._lock = threading.Lock()
        self._closed = False
        if read_only:
            check_schema(self._conn())
        else:
            migrate(self._conn())

    def _conn(self) -> sqlite3.Connection:
        if self._closed:  # also a thread that still has its connection (a sink that outlived stop)
            raise OutboxError("the outbox is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        # check_same_thread=False only so close() may close every thread's connection at the end.
        if self.read_only:
            conn = connect_read_only(self.path, timeout_s=30, check_same_thread=False)
            conn.isolation_level = None
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn = conn
        with self._lock:
            self._connections.append((threading.current_thread(), conn))
        return conn

    def _write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._conn()
        if conn.in_transaction:  # a COMMIT that failed (disk full) leaves the transaction open
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.debug("outbox: rollback failed: %s", exc)
            raise
        return result

    # --- events -------------------------------------------------------------------------------

    def enqueue(self, payload: dict[str, Any], sinks: Sequence[str], *, created_at: float) -> int | None:
        """Store one event and a pending delivery for each sink, atomically.

        ``payload`` needs alert_id, seq, event, camera, query_id, track_id and started_at.
        ``created_at`` is the event's UNIX time. Returns the event's row id, or None when an event
        with the same (alert_id, seq) is already stored (it is then not queued again).
        """
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False)

        def work(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(
                """INSERT OR IGNORE INTO alerts
                   (alert_id, seq, event, camera, query_id, track_id, started_at, created_at, payload)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    payload["alert_id"],
                    int(payload["seq"]),
                    payload["event"],
                    payload["camera"],
                    int(payload["query_id"]),
                    int(payload["track_id"]),
                    float(payload["started_at"]),
                    float(created_at),
                    text,
                ),
            )
            if cursor.rowcount == 0:
                return None
            row = cursor.lastrowid
            conn.executemany(
                f"INSERT INTO deliveries (event_row, sink, state) VALUES (?, ?, '{PENDING}')",
                [(row, sink) for sink in sinks],
            )
            return row

        row: int | None = self._write(work)
        if row is None:
            log.debug("outbox: event %s/%s already stored", payload["alert_id"], payload["seq"])
        return row

    def next_pending(self, sink: str) -> PendingDelivery | None:
        """The oldest pending event of ``sink`` (outbox order), or None."""
        found = self.pending_batch(sink, 1)
        return found[0] if found else None

    def pending_batch(self, sink: str, limit: int) -> list[PendingDelivery]:
        """Up to ``limit`` oldest pending events of ``sink``, in outbox order (one query)."""
        rows = (
            self._conn()
            .execute(
                f"""SELECT d.event_row, d.attempts, d.next_attempt_at, a.payload
                   FROM deliveries d JOIN alerts a ON a.id = d.event_row
                   WHERE d.sink = ? AND d.state = '{PENDING}' ORDER BY d.event_row LIMIT ?""",
                (sink, max(1, int(limit))),
            )
            .fetchall()
        )
        return [PendingDelivery(int(r[0]), sink, int(r[1]), float(r[2]), json.loads(r[3])) for r in rows]

    def mark_delivered(self, delivery: PendingDelivery, now: float) -> None:
        """Record the sink's acknowledgement of an event (UNIX seconds ``now``)."""
        self.mark_delivered_many([delivery], now)

    def mark_delivered_many(self, deliveries: Sequence[PendingDelivery], now: float) -> None:
        """Record the sink's acknowledgement of several events in one transaction (UNIX seconds)."""
        if not deliveries:
            return
        self._write(
            lambda conn: conn.executemany(
                f"""UPDATE deliveries SET state = '{DELIVERED}', attempts = attempts + 1, delivered_at = ?,
                   last_error = NULL WHERE sink = ? AND event_row = ?""",
                [(now, delivery.sink, delivery.event_row) for delivery in deliveries],
            )
        )

    def mark_failed_attempt(
        self, delivery: PendingDelivery, error: str, *, next_attempt_at: float, give_up: bool = False
    ) -> None:
        """Record a failed attempt; ``give_up`` moves the event to this sink's dead letters."""
        state = FAILED if give_up else PENDING
        failed_at = next_attempt_at if give_up else None
        self._write(
            lambda conn: conn.execute(
                """UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?,
                   last_error = ?, failed_at = ? WHERE sink = ? AND event_row = ?""",
                (state, next_attempt_at, error[:1000], failed_at, delivery.sink, delivery.event_row),
            )
        )

    # --- dead letters -------------------------------------------------------------------------

    def dead_letters(
        self, *, sink: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Events a sink refused for good, oldest first: sink, event_id, attempts, last_error, failed_at."""
        rows = self._conn().execute(
            """SELECT sink, event_row, alert_id, seq, event, camera, query_id, attempts, last_error, failed_at
               FROM dead_letters WHERE (? IS NULL OR sink = ?) ORDER BY event_row, sink LIMIT ? OFFSET ?""",
            (sink, sink, int(limit), int(offset)),
        )
        keys = ("sink", "event_row", "alert_id", "seq", "event", "camera", "query_id", "attempts")
        result = []
        for row in rows:
            item = dict(zip(keys, row[:8], strict=True))
            item.update(event_id=f"{row[2]}/{row[3]}", last_error=row[8], failed_at=row[9])
            result.append(item)
        return result

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters per sink."""
        rows = self._conn().execute(
            f"SELECT sink, COUNT(*) FROM deliveries WHERE state = '{FAILED}' GROUP BY sink"
        )
        return {str(sink): int(count) for sink, count in rows}

    def retry_dead_letters(self, *, sink: str | None = None, event_row: int | None = None) -> int:
        """Queue dead letters again (all, one sink's, or one event of one sink); return how many.

        They go out in outbox order, before later events, with a fresh attempt count.
        """

        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                f"""UPDATE deliveries SET state = '{PENDING}', attempts = 0, next_attempt_at = 0,
                       failed_at = NULL
                   WHERE state = '{FAILED}' AND (? IS NULL OR sink = ?) AND (? IS NULL OR event_row = ?)""",
                (sink, sink, event_row, event_row),
            )
            return int(cursor.rowcount)

        count: int = self._write(work)
        return count

    def backlog(self, sinks: Sequence[str] = ()) -> dict[str, int]:
        """Pending events per sink (``sinks`` are listed even with none pending)."""
        counts = dict.fromkeys(sinks, 0)
        rows = self._conn().execute(
            f"SELECT sink, COUNT(*) FROM deliveries WHERE state = '{PENDING}' GROUP BY sink"
        )
        counts.update({str(sink): int(count) for sink, count in rows})
        return counts

    def undelivered_alert_ids(self) -> set[str]:
        """Alerts with an event some sink has not acknowledged yet (pending or dead-lettered)."""
        rows = self._conn().execute(
            f"""SELECT DISTINCT a.alert_id FROM deliveries d JOIN alerts a ON a.id = d.event_row
               WHERE d.state != '{DELIVERED}'"""
        )
        return {str(alert_id) for (alert_id,) in rows}

    def delivery_states(self) -> dict[str, dict[str, int]]:
        """Per sink: the number of events in each delivery state."""
        result: dict[str, dict[str, int]] = {}
        for sink, state, count in self._conn().execute(
            "SELECT sink, state, COUNT(*) FROM deliveries GROUP BY sink, state"
        ):
            result.setdefault(str(sink), {PENDING: 0, DELIVERED: 0, FAILED: 0})[str(state)] = int(count)
        return result

    # --- history ------------------------------------------------------------------------------

    def recent(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        camera: str | None = None,
        query_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """The latest event of each alert, newest alert first, filtered by camera, query and start time.

        ``since``/``until`` bound the alert's ``started_at`` (UNIX seconds, ``since <= t < until``).
        """
        where, args = ["1"], []
        for clause, value in (
            ("camera = ?", camera),
            ("query_id = ?", query_id),
            ("started_at >= ?", since),
            ("started_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        # SQLite takes the bare column `payload` from the row holding MAX(seq).
        rows = self._conn().execute(
            f"""SELECT payload, MAX(seq) FROM alerts WHERE {" AND ".join(where)}
               GROUP BY alert_id ORDER BY started_at DESC, alert_id LIMIT ? OFFSET ?""",
            (*args, int(limit), int(offset)),
        )
        return [json.loads(payload) for payload, _ in rows]

    def last_row(self) -> int:
        """The newest event's row id (0 when none): events stored later get larger ones (AUTOINCREMENT)."""
        return int(self._conn().execute("SELECT COALESCE(MAX(id), 0) FROM alerts").fetchone()[0])

    def opened_after(self, row: int) -> list[tuple[int, str, int]]:
        """Alerts whose opening event was stored after ``row`` (see :meth:`last_row`), counted per
        query: (query id, query text, alerts), by query id. A range of the primary key: cheap."""
        rows = self._conn().execute(
            """SELECT query_id, json_extract(payload, '$.query'), COUNT(*) FROM alerts
               WHERE id > ? AND seq = 0 GROUP BY query_id ORDER BY query_id""",
            (int(row),),
        )
        return [(int(query_id), str(text), int(count)) for query_id, text, count in rows]

    def latest_opened_after(self, row: int) -> dict[str, Any] | None:
        """The latest event of the newest alert opened after ``row``, or None."""
        found = (
            self._conn()
            .execute(
                """SELECT payload FROM alerts WHERE alert_id =
                       (SELECT alert_id FROM alerts WHERE id > ? AND seq = 0 ORDER BY id DESC LIMIT 1)
                   ORDER BY seq DESC LIMIT 1""",
                (int(row),),
            )
            .fetchone()
        )
        return None if found is None else dict(json.loads(found[0]))

    def events(self, alert_id: str) -> list[dict[str, Any]]:
        """Every stored event of one alert, in sequence order (empty if unknown)."""
        rows = self._conn().execute("SELECT payload FROM alerts WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [json.loads(payload) for (payload,) in rows]

    def unclosed(self) -> list[dict[str, Any]]:
        """The latest event of each alert that has no "closed" event (left open by a crash)."""
        rows = self._conn().execute(
            """SELECT payload FROM (SELECT payload, event, MAX(seq) FROM alerts GROUP BY alert_id)
               WHERE event != 'closed'"""
        )
        return [json.loads(payload) for (payload,) in rows]

    def prune(self, before: float) -> int:
        """Delete alerts whose latest event is older than ``before`` (UNIX seconds) and that have no
        pending delivery; return how many events were deleted."""

        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                f"""DELETE FROM alerts WHERE alert_id IN (
                       SELECT alert_id FROM alerts GROUP BY alert_id HAVING MAX(created_at) < ?
                       EXCEPT
                       SELECT a.alert_id FROM alerts a JOIN deliveries d ON d.event_row = a.id
                       WHERE d.state = '{PENDING}')""",
                (before,),
            )
            return int(cursor.rowcount)

        deleted: int = self._write(work)
        return deleted

    def compact(self) -> None:
        """Move the write-ahead log into the database and truncate it (frees space after a full disk)."""
        try:
            self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("outbox: checkpoint failed: %s", exc)

    def close(self) -> None:
        """Close the connections of this thread and of threads that ended; refuse any later use.

        A thread still running (a delivery thread whose sink outlived the stop timeout) may be in
        the middle of a statement on its connection: closing that under it can crash SQLite, so it
        is left to finish that statement, its next call raises :class:`OutboxError`, and the
        connection closes when the thread ends (or the process does).
        """
        me = threading.current_thread()
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for owner, conn in connections:
            if owner is not me and owner.is_alive():
                log.debug("outbox: %s still runs; its connection closes with it", owner.name)
                continue
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.debug("outbox: closing a connection failed: %s", exc)
        self._local = threading.local()
