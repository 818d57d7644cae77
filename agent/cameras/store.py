"""Cameras in the state database: the YAML's applied at every start, others added while the agent runs.

The rule (README "Your cameras"): the YAML's ``cameras:`` win for the ids they list. Each start
applies them to this table (added, or replaced by the YAML's entry); a camera that came from the
YAML and left it is removed. Cameras added at run time (``watchword camera add``, ``POST
/cameras``) are not in the YAML; they are kept across starts and changed only at run time. A run-time
change to a camera the YAML lists lasts until the next start. Each row records where it came from
(``source``: ``config`` or ``runtime``).

The table lives in the same SQLite file as the query registry (``database:`` in the config). Every
change bumps a revision counter, so the running agent notices it by polling one integer (the same
scheme as the query registry) and opens or stops that one camera without a restart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.config import AgentConfig
from agent.redact import has_credentials
from agent.sources.config import CameraConfig
from agent.sources.uri import redact_uri
from agent.sqlite_files import connect_read_only
from agent.sqlite_threads import ThreadLocalSQLite

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cameras (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        source TEXT NOT NULL DEFAULT 'runtime'
    )""",
    "CREATE TABLE IF NOT EXISTS camera_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT OR IGNORE INTO camera_meta (key, value) VALUES ('revision', 0)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS cameras_{op.lower()} AFTER {op} ON cameras"
        " BEGIN UPDATE camera_meta SET value = value + 1 WHERE key = 'revision'; END"
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
]


CONFIG = "config"
RUNTIME = "runtime"
_INSERT = "INSERT INTO cameras (id, config, created_at, updated_at, source) VALUES (?, ?, ?, ?, ?)"


class CameraError(ValueError):
    """A camera that cannot be stored as given; the message says why."""


class CameraNotFoundError(KeyError):
    """No camera with that id."""

    def __str__(self) -> str:
        return f"no camera with id {self.args[0]!r}"


def redacted(camera: CameraConfig) -> dict[str, Any]:
    """The camera as JSON for the API and CLI: credentials in the URI are never shown back."""
    data = camera.model_dump(mode="json")
    data["uri"] = redact_uri(camera.uri)
    data["has_credentials"] = has_credentials(camera.uri)
    return data


def parse_camera(data: dict[str, Any]) -> CameraConfig:
    """A validated camera config, else :class:`CameraError` naming the bad field."""
    try:
        return CameraConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "camera"
        raise CameraError(f"{where}: {first['msg']}") from exc


@dataclass
class AppliedCameras:
    """What applying the YAML's cameras changed (ids), and the run-time cameras kept."""

    added: list[str] = field(default_factory=list)
    replaced: dict[str, list[str]] = field(default_factory=dict)  # id -> the fields that changed
    removed: list[str] = field(default_factory=list)
    runtime: list[str] = field(default_factory=list)

    def lines(self, source: str) -> list[str]:
        """One line per kind of change, for the start's log."""
        lines = []
        if self.added:
            lines.append(f"cameras from {source} added: {', '.join(self.added)}")
        for camera_id, fields in self.replaced.items():
            lines.append(f"camera {camera_id}: {source}'s entry applied, changed: {', '.join(fields)}")
        if self.removed:
            lines.append(f"cameras no longer in {source} removed: {', '.join(self.removed)}")
        if self.runtime:
            lines.append(f"cameras added at run time, kept: {', '.join(self.runtime)}")
        return lines


def _changed_fields(old: CameraConfig, new: CameraConfig) -> list[str]:
    before, after = old.model_dump(), new.model_dump()
    return [name for name in after if before.get(name) != after[name]]


def _migrate(db: sqlite3.Connection) -> None:
    """Tables made before cameras recorded their source: rows seeded from the YAML become ``config``
    (seed() stored them all with the seed's own time), the others ``runtime``."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(cameras)")}
    if "source" in columns:
        return
    db.execute(f"ALTER TABLE cameras ADD COLUMN source TEXT NOT NULL DEFAULT '{RUNTIME}'")
    db.execute(
        f"UPDATE cameras SET source = '{CONFIG}' WHERE created_at = "
        "(SELECT value FROM camera_meta WHERE key = 'seeded')"
    )


def read_stored_cameras(path: str | Path) -> list[tuple[CameraConfig, str]] | None:
    """The cameras stored in ``path`` with their source, read only; None when it holds no camera table."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        db = connect_read_only(path)  # writes nothing, also in a folder this process cannot write
    except sqlite3.Error:
        return None
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(cameras)")}
        if not columns:
            return None
        source = "source" if "source" in columns else f"'{RUNTIME}'"
        rows = db.execute(f"SELECT config, {source} FROM cameras ORDER BY created_at, id").fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return [(CameraConfig.model_validate_json(config), origin) for config, origin in rows]


class CameraStore:
    """CRUD over the cameras table. Thread-safe: one connection per thread, short transactions.

    Args:
        path: the state database (created, with its folder, unless ``read_only``).
        read_only: read an existing database without writing anything (``camera list`` where the
            folder cannot be written); edits then fail.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sqlite = ThreadLocalSQLite(
            self.path, ("journal_mode=WAL", "busy_timeout=10000"), read_only=read_only
        )
        if read_only:
            self._sqlite.connect()  # fails here, not in the first read, when the file cannot be read
            return
        with self._sqlite.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            _migrate(db)

    def close(self) -> None:
        self._sqlite.close()

    def revision(self) -> int:
        """A counter that changes whenever a camera is added, changed or removed."""
        row = (
            self._sqlite.connect().execute("SELECT value FROM camera_meta WHERE key = 'revision'").fetchone()
        )
        return int(row[0])

    def apply_config(self, cameras: list[CameraConfig]) -> AppliedCameras:
        """Make the table hold the YAML's ``cameras`` (the YAML wins for the ids it lists), remove the
        cameras that came from the YAML and are no longer in it, keep those added at run time."""
        now = time.time()
        applied = AppliedCameras()
        wanted = {camera.id: camera for camera in cameras}
        with self._sqlite.transaction() as db:
            stored = {
                camera_id: (CameraConfig.model_validate_json(config), source)
                for camera_id, config, source in db.execute("SELECT id, config, source FROM cameras")
            }
            for camera_id, camera in wanted.items():
                old = stored.get(camera_id)
                if old is None:
                    db.execute(_INSERT, (camera_id, camera.model_dump_json(), now, now, CONFIG))
                    applied.added.append(camera_id)
                elif old[0] != camera or old[1] != CONFIG:
                    db.execute(
                        "UPDATE cameras SET config = ?, updated_at = ?, source = ? WHERE id = ?",
                        (camera.model_dump_json(), now, CONFIG, camera_id),
                    )
                    changed = _changed_fields(old[0], camera)
                    if old[1] != CONFIG:
                        changed.append("source (it was added at run time)")
                    applied.replaced[camera_id] = changed
            for camera_id, (_, source) in stored.items():
                if camera_id in wanted:
                    continue
                if source == CONFIG:
                    db.execute("DELETE FROM cameras WHERE id = ?", (camera_id,))
                    applied.removed.append(camera_id)
                else:
                    applied.runtime.append(camera_id)
        return applied

    def source_of(self, camera_id: str) -> str:
        """``config`` (listed in the YAML at the last start) or ``runtime`` (added at run time)."""
        db = self._sqlite.connect()
        # A table from before sources, opened read only (not migrated): its cameras count as run-time ones.
        columns = {row[1] for row in db.execute("PRAGMA table_info(cameras)")}
        column = "source" if "source" in columns else f"'{RUNTIME}'"
        row = db.execute(f"SELECT {column} FROM cameras WHERE id = ?", (camera_id,)).fetchone()
        if row is None:
            raise CameraNotFoundError(camera_id)
        return str(row[0])

    def list_cameras(self) -> list[CameraConfig]:
        db = self._sqlite.connect()
        if self.read_only and not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'cameras'").fetchone():
            return []  # no agent has stored cameras in it yet
        rows = db.execute("SELECT config FROM cameras ORDER BY created_at, id")
        return [CameraConfig.model_validate_json(config) for (config,) in rows]

    def get(self, camera_id: str) -> CameraConfig:
        row = (
            self._sqlite.connect().execute("SELECT config FROM cameras WHERE id = ?", (camera_id,)).fetchone()
        )
        if row is None:
            raise CameraNotFoundError(camera_id)
        return CameraConfig.model_validate_json(row[0])

    def add(self, data: dict[str, Any]) -> CameraConfig:
        camera = parse_camera(data)
        now = time.time()
        with self._sqlite.transaction() as db:
            if db.execute("SELECT 1 FROM cameras WHERE id = ?", (camera.id,)).fetchone() is not None:
                raise CameraError(f"a camera with id {camera.id!r} exists")
            db.execute(_INSERT, (camera.id, camera.model_dump_json(), now, now, RUNTIME))
        return camera

    def update(self, camera_id: str, changes: dict[str, Any]) -> CameraConfig:
        """Change some fields; the id cannot change. A URI left out keeps the stored credentials."""
        if "id" in changes and changes["id"] != camera_id:
            raise CameraError("a camera's id cannot change; remove it and add a new one")
        with self._sqlite.transaction() as db:
            row = db.execute("SELECT config FROM cameras WHERE id = ?", (camera_id,)).fetchone()
            if row is None:
                raise CameraNotFoundError(camera_id)
            camera = parse_camera({**json.loads(row[0]), **changes, "id": camera_id})
            db.execute(
                "UPDATE cameras SET config = ?, updated_at = ? WHERE id = ?",
                (camera.model_dump_json(), time.time(), camera_id),
            )
        return camera

    def remove(self, camera_id: str) -> None:
        with self._sqlite.transaction() as db:
            if db.execute("DELETE FROM cameras WHERE id = ?", (camera_id,)).rowcount == 0:
                raise CameraNotFoundError(camera_id)


def site_cameras(config: AgentConfig) -> list[CameraConfig]:
    """The cameras a start of ``config`` runs, by the rule above: the YAML's, then those added at run
    time that the YAML does not list (read only; the database may not exist yet)."""
    listed = {camera.id for camera in config.cameras}
    stored = read_stored_cameras(config.database) or []
    return [*config.cameras, *(c for c, source in stored if source == RUNTIME and c.id not in listed)]
