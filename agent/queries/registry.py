"""The query registry: one SQLite file (WAL mode), schema versioned with ``PRAGMA user_version``.

The CLI, the HTTP API and the running agent open the same file. Every change bumps a revision
counter (by trigger), so the agent notices additions, edits and removals by polling one integer.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent.api.metrics import Metric
from agent.queries.bounds import (
    MAX_CAMERAS_PER_QUERY,
    MAX_NORMAL_PROMPTS,
    MAX_QUERY_TEXT_CHARS,
    camera_id_problem,
    cooldown_problem,
    refused_char,
)
from agent.queries.language import language_problem
from agent.sqlite_files import database_problem, writable_beside
from agent.sqlite_threads import ThreadLocalSQLite
from agent.zone_names import ZONE_NAME

log = logging.getLogger(__name__)

MAX_ZONES_PER_QUERY = 16

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")


class QueryError(ValueError):
    """A query that cannot be stored as given; the message says why."""


class QueryNotFoundError(KeyError):
    """No query with that id."""

    def __str__(self) -> str:
        return f"no query with id {self.args[0]}"


def validate_query_text(text: str) -> str:
    """Trimmed text of 1 to ``MAX_QUERY_TEXT_CHARS`` (500) characters without control characters,
    else :class:`QueryError`."""
    if not isinstance(text, str):
        raise QueryError("query text must be a string")
    text = text.strip()
    if not text:
        raise QueryError("query text is empty")
    if len(text) > MAX_QUERY_TEXT_CHARS:
        raise QueryError(f"query text is {len(text)} characters; the limit is {MAX_QUERY_TEXT_CHARS}")
    refused = refused_char(text)
    if refused is not None:
        position, char = refused
        raise QueryError(f"query text has a control character (U+{ord(char):04X}) at position {position}")
    return text


def _warn_language(query_id: int, text: str) -> None:
    """Added or edited: say when the text may not be English (accepted, but it will match little)."""
    problem = language_problem(text)
    if problem is not None:
        log.warning("query %d %r: %s", query_id, text, problem)


def _validate_prompts(prompts: list[str] | None) -> list[str] | None:
    if prompts is None:
        return None
    if len(prompts) > MAX_NORMAL_PROMPTS:
        raise QueryError(f"{len(prompts)} normal prompts; the limit is {MAX_NORMAL_PROMPTS} per query")
    cleaned = [validate_query_text(p) for p in prompts]
    if not cleaned:
        raise QueryError("normal prompts, when given, must not be empty")
    return cleaned


def _validate_cameras(cameras: list[str] | None) -> list[str] | None:
    if cameras is None:
        return None
    cleaned = sorted({c.strip() for c in cameras if c.strip()})
    if not cleaned:
        raise QueryError("camera list, when given, must name at least one camera")
    if len(cleaned) > MAX_CAMERAS_PER_QUERY:
        raise QueryError(f"{len(cleaned)} cameras; the limit is {MAX_CAMERAS_PER_QUERY} per query")
    for camera in cleaned:
        problem = camera_id_problem(camera)
        if problem is not None:
            raise QueryError(problem)
    return cleaned


def _validate_zones(zones: list[str] | None) -> list[str] | None:
    if zones is None:
        return None
    cleaned = sorted({z.strip() for z in zones if z.strip()})
    if not cleaned:
        raise QueryError("zone list, when given, must name at least one zone")
    if len(cleaned) > MAX_ZONES_PER_QUERY:
        raise QueryError(f"{len(cleaned)} zones; the limit is {MAX_ZONES_PER_QUERY} per query")
    for zone in cleaned:
        if not re.match(ZONE_NAME, zone):
            raise QueryError(
                f"zone name {zone!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
    return cleaned


def _validate_cooldown(cooldown_s: float) -> float:
    problem = cooldown_problem(cooldown_s)
    if problem is not None:
        raise QueryError(problem)
    return float(cooldown_s)


def _validate_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not (isinstance(threshold, int | float) and 0.0 < threshold < 1.0):
        raise QueryError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    return threshold


@dataclass(frozen=True)
class Query:
    """A standing query. ``cameras`` None means every camera; ``threshold`` None means automatic."""

    id: int
    text: str
    enabled: bool
    cameras: list[str] | None
    threshold: float | None
    threshold_source: str | None
    severity: str
    cooldown_s: float | None
    normal_prompts: list[str] | None
    created_at: float
    updated_at: float
    # the key of a fleet query (applied from the hub's KV bucket, read-only here); None: local
    fleet_key: str | None = None
    # zone names (``cameras[].zones``): sampled only while a track's foot point is in one; None: anywhere
    zones: list[str] | None = None

    def applies_to(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "enabled": self.enabled,
            "cameras": self.cameras,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "severity": self.severity,
            "cooldown_s": self.cooldown_s,
            "normal_prompts": self.normal_prompts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "fleet": self.fleet_key,
            "zones": self.zones,
        }


@dataclass
class QueryUpdate:
    """Fields to change; ``None`` leaves a field as it is (use the ``clear_*`` flags to unset)."""

    text: str | None = None
    enabled: bool | None = None
    cameras: list[str] | None = None
    clear_cameras: bool = False
    threshold: float | None = None
    clear_threshold: bool = False
    severity: str | None = None
    cooldown_s: float | None = None
    clear_cooldown: bool = False
    normal_prompts: list[str] | None = None
    clear_normal_prompts: bool = False
    zones: list[str] | None = None
    clear_zones: bool = False
    threshold_source: Literal["manual", "calibrated"] = "manual"


_SCHEMA_1 = [
    """CREATE TABLE queries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        text TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        cameras TEXT,
        threshold REAL,
        threshold_source TEXT,
        severity TEXT NOT NULL DEFAULT 'warning',
        cooldown_s REAL NOT NULL DEFAULT 60,
        normal_prompts TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE query_embeddings (
        query_id INTEGER NOT NULL REFERENCES queries(id) ON DELETE CASCADE,
        model_hash TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        embedding BLOB NOT NULL,
        PRIMARY KEY (query_id, model_hash)
    )""",
    "CREATE TABLE registry_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO registry_meta (key, value) VALUES ('revision', 0)",
    *(
        f"CREATE TRIGGER queries_{op.lower()} AFTER {op} ON queries"
        " BEGIN UPDATE registry_meta SET value = value + 1 WHERE key = 'revision'; END"
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
]


def _migration_1(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript() would commit the surrounding transaction.
    for statement in _SCHEMA_1:
        db.execute(statement)


def _migration_2(db: sqlite3.Connection) -> None:
    # A query without its own cooldown uses the agent's alerts.cooldown_s. The column stays NOT NULL
    # (rebuilding the table would drop the embedding cache with it); a flag marks "not set".
    # Queries from before keep the cooldown they were stored with.
    db.execute("ALTER TABLE queries ADD COLUMN cooldown_unset INTEGER NOT NULL DEFAULT 0")


def _migration_3(db: sqlite3.Connection) -> None:
    # A fleet query (agent/fleet) carries its key in the hub's bucket; local queries have none.
    db.execute("ALTER TABLE queries ADD COLUMN fleet_key TEXT")
    db.execute("CREATE UNIQUE INDEX queries_fleet_key ON queries(fleet_key) WHERE fleet_key IS NOT NULL")


def _migration_4(db: sqlite3.Connection) -> None:
    # Zones a query is limited to (JSON list of names); existing queries keep NULL: anywhere.
    db.execute("ALTER TABLE queries ADD COLUMN zones TEXT")


# Index i holds the migration from schema version i to i + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _row_to_query(row: sqlite3.Row) -> Query:
    return Query(
        id=int(row["id"]),
        text=row["text"],
        enabled=bool(row["enabled"]),
        cameras=None if row["cameras"] is None else list(json.loads(row["cameras"])),
        threshold=row["threshold"],
        threshold_source=row["threshold_source"],
        severity=row["severity"],
        cooldown_s=None if row["cooldown_unset"] else float(row["cooldown_s"]),
        normal_prompts=None if row["normal_prompts"] is None else list(json.loads(row["normal_prompts"])),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        fleet_key=row["fleet_key"],
        zones=None if row["zones"] is None else list(json.loads(row["zones"])),
    )


class QueryRegistry:
    """CRUD over the queries table. Thread-safe: one connection per thread, short transactions.

    Args:
        path: the SQLite file (created, with its folder, unless ``read_only``).
        clock: UNIX seconds for created/updated times.
        read_only: read an existing database without writing anything (``query list`` and ``show``
            where the folder cannot be written, a read-only mount for example); edits then fail.

    Raises:
        QueryError: the file cannot be used: a folder, not SQLite, empty or damaged (nothing is
            written then), or of a newer schema.
    """

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = time.time, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if self.path.is_dir():
            raise QueryError(f"the query database {self.path} is a directory, not a SQLite file")
        problem = database_problem(self.path)
        if problem is not None:
            raise QueryError(
                f"cannot use {self.path} as the query database: it {problem}; nothing was changed: "
                "restore it from a backup, or move it (with any -wal file beside it) away to start anew"
            )
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise QueryError(
                    f"cannot create the folder of the query database {self.path}: {exc}"
                ) from exc
        self._clock = clock
        self._sqlite = ThreadLocalSQLite(
            self.path,
            ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000"),
            rows=True,
            read_only=read_only,
        )
        try:
            if read_only:
                self._check_schema()
            else:
                self._migrate()
        except sqlite3.DatabaseError as exc:  # not a database, encrypted, read-only, disk I/O
            self.close()
            hint = "" if read_only or writable_beside(self.path) else " (its folder cannot be written)"
            raise QueryError(f"cannot use {self.path} as the query database: {exc}{hint}") from exc

    # --- connections and schema ------------------------------------------------------------

    def _migrate(self) -> None:
        with self._sqlite.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise QueryError(
                    f"{self.path} has query schema version {version}, newer than this watchword "
                    f"({SCHEMA_VERSION}); upgrade watchword"
                )
            for step in MIGRATIONS[version:]:
                step(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _check_schema(self) -> None:
        version = int(self._sqlite.connect().execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            self.close()
            which = "newer" if version > SCHEMA_VERSION else "older"
            raise QueryError(
                f"{self.path} has query schema version {version}, {which} than this watchword's "
                f"({SCHEMA_VERSION}); it cannot be read in a folder this process cannot write"
            )

    def close(self) -> None:
        self._sqlite.close()

    # --- reads -----------------------------------------------------------------------------

    def revision(self) -> int:
        """A counter that changes whenever any query is added, changed or removed."""
        row = (
            self._sqlite.connect()
            .execute("SELECT value FROM registry_meta WHERE key = 'revision'")
            .fetchone()
        )
        return int(row[0])

    def list_queries(self, *, enabled_only: bool = False) -> list[Query]:
        sql = "SELECT * FROM queries" + (" WHERE enabled = 1" if enabled_only else "") + " ORDER BY id"
        return [_row_to_query(row) for row in self._sqlite.connect().execute(sql)]

    def metrics(self) -> list[Metric]:
        """The standing queries evaluated now (enabled)."""
        enabled = len(self.list_queries(enabled_only=True))  # the matchers' own definition of evaluated
        return [Metric("watchword_queries_enabled", "gauge", "Standing queries evaluated").add(enabled)]

    def get(self, query_id: int) -> Query:
        row = self._sqlite.connect().execute("SELECT * FROM queries WHERE id = ?", (query_id,)).fetchone()
        if row is None:
            raise QueryNotFoundError(query_id)
        return _row_to_query(row)

    # --- writes ----------------------------------------------------------------------------

    def add(
        self,
        text: str,
        *,
        cameras: list[str] | None = None,
        threshold: float | None = None,
        severity: str = "warning",
        cooldown_s: float | None = None,
        normal_prompts: list[str] | None = None,
        enabled: bool = True,
        fleet_key: str | None = None,
        zones: list[str] | None = None,
    ) -> Query:
        """Register a query; ``cooldown_s`` None: the agent's ``alerts.cooldown_s`` applies.

        ``fleet_key`` marks a fleet query (agent/fleet): only the fleet may change or remove it.
        """
        text = validate_query_text(text)
        cameras = _validate_cameras(cameras)
        zones = _validate_zones(zones)
        threshold = _validate_threshold(threshold)
        normal_prompts = _validate_prompts(normal_prompts)
        if severity not in SEVERITIES:
            raise QueryError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        cooldown = None if cooldown_s is None else _validate_cooldown(cooldown_s)
        now = self._clock()
        with self._sqlite.transaction() as db:
            cursor = db.execute(
                "INSERT INTO queries (text, enabled, cameras, threshold, threshold_source, severity,"
                " cooldown_s, cooldown_unset, normal_prompts, created_at, updated_at, fleet_key, zones)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    text,
                    int(enabled),
                    None if cameras is None else json.dumps(cameras),
                    threshold,
                    None if threshold is None else "manual",
                    severity,
                    0.0 if cooldown is None else cooldown,
                    int(cooldown is None),
                    None if normal_prompts is None else json.dumps(normal_prompts),
                    now,
                    now,
                    fleet_key,
                    None if zones is None else json.dumps(zones),
                ),
            )
            query_id = int(cursor.lastrowid or 0)
        _warn_language(query_id, text)
        return self.get(query_id)

    def fleet_query(self, fleet_key: str) -> Query | None:
        """The fleet query with this key, or None."""
        row = (
            self._sqlite.connect()
            .execute("SELECT * FROM queries WHERE fleet_key = ?", (fleet_key,))
            .fetchone()
        )
        return None if row is None else _row_to_query(row)

    def _check_local(self, query: Query, fleet: bool) -> None:
        if query.fleet_key is not None and not fleet:
            raise QueryError(
                f"query {query.id} is a fleet query ({query.fleet_key}): change it at the hub "
                "(watchword fleet query edit, or the fleet console)"
            )

    def update(self, query_id: int, change: QueryUpdate, *, fleet: bool = False) -> Query:
        """Change a query; a fleet query only with ``fleet`` (the fleet's sync), else :class:`QueryError`."""
        current = self.get(query_id)
        self._check_local(current, fleet)
        values: dict[str, Any] = {}
        if change.text is not None:
            values["text"] = validate_query_text(change.text)
            _warn_language(query_id, values["text"])
        if change.enabled is not None:
            values["enabled"] = int(change.enabled)
        if change.clear_cameras:
            values["cameras"] = None
        elif change.cameras is not None:
            values["cameras"] = json.dumps(_validate_cameras(change.cameras))
        if change.clear_zones:
            values["zones"] = None
        elif change.zones is not None:
            values["zones"] = json.dumps(_validate_zones(change.zones))
        if change.clear_threshold:
            values["threshold"], values["threshold_source"] = None, None
        elif change.threshold is not None:
            values["threshold"] = _validate_threshold(change.threshold)
            values["threshold_source"] = change.threshold_source
        if change.severity is not None:
            if change.severity not in SEVERITIES:
                raise QueryError(f"severity must be one of {', '.join(SEVERITIES)}, got {change.severity!r}")
            values["severity"] = change.severity
        if change.clear_cooldown:
            values["cooldown_unset"] = 1
        elif change.cooldown_s is not None:
            values["cooldown_s"] = _validate_cooldown(change.cooldown_s)
            values["cooldown_unset"] = 0
        if change.clear_normal_prompts:
            values["normal_prompts"] = None
        elif change.normal_prompts is not None:
            values["normal_prompts"] = json.dumps(_validate_prompts(change.normal_prompts))
        if not values:
            return current
        values["updated_at"] = self._clock()
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self._sqlite.transaction() as db:
            db.execute(f"UPDATE queries SET {assignments} WHERE id = ?", (*values.values(), query_id))
        return self.get(query_id)

    def set_enabled(self, query_id: int, enabled: bool) -> Query:
        return self.update(query_id, QueryUpdate(enabled=enabled))

    def remove(self, query_id: int, *, fleet: bool = False) -> None:
        """Delete a query; a fleet query only with ``fleet``, else :class:`QueryError`."""
        self._check_local(self.get(query_id), fleet)
        with self._sqlite.transaction() as db:
            cursor = db.execute("DELETE FROM queries WHERE id = ?", (query_id,))
            if cursor.rowcount == 0:
                raise QueryNotFoundError(query_id)

    # --- embedding cache -------------------------------------------------------------------

    def cached_embedding(self, query_id: int, model_hash: str, text_hash: str) -> np.ndarray | None:
        """The stored text embedding of a query for a model, if the text it was made from is unchanged."""
        row = (
            self._sqlite.connect()
            .execute(
                "SELECT dim, embedding, text_hash FROM query_embeddings"
                " WHERE query_id = ? AND model_hash = ?",
                (query_id, model_hash),
            )
            .fetchone()
        )
        if row is None or row["text_hash"] != text_hash:
            return None
        return np.frombuffer(row["embedding"], dtype=np.float32).reshape(int(row["dim"])).copy()

    def store_embedding(self, query_id: int, model_hash: str, text_hash: str, embedding: np.ndarray) -> None:
        vector = np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1)
        with self._sqlite.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO query_embeddings (query_id, model_hash, text_hash, dim, embedding)"
                " VALUES (?, ?, ?, ?, ?)",
                (query_id, model_hash, text_hash, len(vector), vector.tobytes()),
            )
