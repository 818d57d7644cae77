"""Cameras in the state database: seeded from the YAML on first start, then edited while the agent runs.

The table lives in the same SQLite file as the query registry (``database:`` in the config). Every
change bumps a revision counter, so the running agent notices it by polling one integer (the same
scheme as the query registry) and opens or stops that one camera without a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.config import CameraConfig
from agent.redact import has_credentials
from agent.sources.uri import redact_uri
from agent.sqlite_threads import ThreadLocalSQLite

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cameras (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS camera_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT OR IGNORE INTO camera_meta (key, value) VALUES ('revision', 0)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS cameras_{op.lower()} AFTER {op} ON cameras"
        " BEGIN UPDATE camera_meta SET value = value + 1 WHERE key = 'revision'; END"
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
]


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

    def close(self) -> None:
        self._sqlite.close()

    def revision(self) -> int:
        """A counter that changes whenever a camera is added, changed or removed."""
        row = (
            self._sqlite.connect().execute("SELECT value FROM camera_meta WHERE key = 'revision'").fetchone()
        )
        return int(row[0])

    def seed(self, cameras: list[CameraConfig]) -> bool:
        """Store ``cameras`` if the database has never held cameras; True if it seeded them."""
        now = time.time()
        with self._sqlite.transaction() as db:
            if db.execute("SELECT 1 FROM camera_meta WHERE key = 'seeded'").fetchone() is not None:
                return False
            for camera in cameras:
                db.execute(
                    "INSERT OR IGNORE INTO cameras (id, config, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (camera.id, camera.model_dump_json(), now, now),
                )
            db.execute("INSERT INTO camera_meta (key, value) VALUES ('seeded', ?)", (now,))
            return True

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
            db.execute(
                "INSERT INTO cameras (id, config, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (camera.id, camera.model_dump_json(), now, now),
            )
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
