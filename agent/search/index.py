"""The recent-track index: SQLite for tracks, samples and thumbnails; usearch for nearest neighbours.

Each track keeps its ``samples_per_track`` crop embeddings with the largest boxes (the clearest views)
and one thumbnail. The matcher hands samples over on its thread (:meth:`observe`, memory only);
a background thread writes them every ``flush_interval_s`` and applies retention. SQLite is the
record; the usearch HNSW index over the sample embeddings is rebuilt from it at start.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.matching.samples import TrackSample
from agent.search.config import SearchConfig

log = logging.getLogger(__name__)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS tracks (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        run INTEGER NOT NULL,
        camera TEXT NOT NULL,
        track_id INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        thumbnail BLOB,
        UNIQUE (run, camera, track_id)
    )""",
    "CREATE INDEX IF NOT EXISTS tracks_seen ON tracks (last_seen)",
    """CREATE TABLE IF NOT EXISTS samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        track_key INTEGER NOT NULL REFERENCES tracks (key) ON DELETE CASCADE,
        time REAL NOT NULL,
        area REAL NOT NULL,
        embedding BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS samples_track ON samples (track_key)",
]
FORGET_AFTER_S = 30.0  # a flushed track unseen this long leaves memory (it stays in the database)


@dataclass
class _Pending:
    camera: str
    track_id: int
    first_seen: float
    last_seen: float
    best: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # area, time, embedding
    thumbnail: bytes | None = None
    dirty: bool = True


@dataclass(frozen=True)
class TrackHit:
    """One track found by a search, with its calibrated score for the query (0..1)."""

    key: int
    camera: str
    track_id: int
    first_seen: float
    last_seen: float
    score: float

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "camera": self.camera,
            "track_id": self.track_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "score": round(self.score, 4),
            "thumbnail": f"/search/thumbnails/{self.key}.jpg",
        }


# (N, D) L2-normalised embeddings -> (N,) calibrated probabilities for one query
ScoreFn = Callable[[np.ndarray], np.ndarray]


class TrackIndex:
    """Recent tracks of all cameras. Thread-safe."""

    def __init__(
        self, directory: Path, config: SearchConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.clock = clock
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "tracks.db"
        self.run = int(clock() * 1000)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._keys: dict[tuple[str, int], int] = {}
        self._ann: Any = None  # usearch.index.Index, made when the first embedding's size is known
        self._dim: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = -float("inf")
        self._rebuild_ann()

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="search-index", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            try:
                self.flush()
            finally:
                self._db.close()

    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_interval_s):
            try:
                self.flush()
                if self.clock() - self._last_prune >= 60.0:
                    self.prune()
            except (sqlite3.Error, OSError):
                log.exception("search index: write failed; retrying")

    # --- input -------------------------------------------------------------------------------

    def observe(self, samples: list[TrackSample]) -> None:
        """Keep the samples in memory (the matcher's thread; no disk work, a JPEG at most per track)."""
        keep = self.config.samples_per_track
        with self._lock:
            for sample in samples:
                key = (sample.camera_id, sample.track_id)
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending(
                        sample.camera_id, sample.track_id, sample.time_s, sample.time_s
                    )
                pending.last_seen = max(pending.last_seen, sample.time_s)
                pending.dirty = True
                x1, y1, x2, y2 = sample.box
                area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
                if len(pending.best) < keep or area > pending.best[-1][0]:
                    largest = not pending.best or area > pending.best[0][0]
                    pending.best.append((area, sample.time_s, np.asarray(sample.embedding, np.float32)))
                    pending.best.sort(key=lambda item: -item[0])
                    del pending.best[keep:]
                    if largest:
                        pending.thumbnail = self._thumbnail(sample)

    def _thumbnail(self, sample: TrackSample) -> bytes | None:
        height, width = sample.image.shape[:2]
        x1, y1, x2, y2 = (round(v) for v in sample.box)
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if x2 <= x1 or y2 <= y1:
            return None
        crop = sample.image[y1:y2, x1:x2]
        scale = self.config.thumbnail_height / crop.shape[0]
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), self.config.thumbnail_height))
        ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return encoded.tobytes() if ok else None

    def flush(self) -> None:
        """Write the tracks that changed since the last flush; forget long-unseen ones from memory."""
        now = self.clock()
        with self._lock:
            dirty = [p for p in self._pending.values() if p.dirty]
            if dirty:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    written = [(p, self._write(p)) for p in dirty]
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                for pending, (removed, added) in written:
                    pending.dirty = False
                    self._ann_update(removed, added)
            for key, pending in list(self._pending.items()):
                if not pending.dirty and now - pending.last_seen > FORGET_AFTER_S:
                    del self._pending[key]
                    self._keys.pop(key, None)

    def _write(self, pending: _Pending) -> tuple[list[int], list[tuple[int, np.ndarray]]]:
        ident = (pending.camera, pending.track_id)
        key = self._keys.get(ident)
        if key is None:
            cursor = self._db.execute(
                "INSERT INTO tracks (run, camera, track_id, first_seen, last_seen, thumbnail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    self.run,
                    pending.camera,
                    pending.track_id,
                    pending.first_seen,
                    pending.last_seen,
                    pending.thumbnail,
                ),
            )
            key = self._keys[ident] = int(cursor.lastrowid or 0)
        else:
            self._db.execute(
                "UPDATE tracks SET last_seen = ?, thumbnail = ? WHERE key = ?",
                (pending.last_seen, pending.thumbnail, key),
            )
        removed = [int(r[0]) for r in self._db.execute("SELECT id FROM samples WHERE track_key = ?", (key,))]
        self._db.execute("DELETE FROM samples WHERE track_key = ?", (key,))
        added = []
        for area, time_s, embedding in pending.best:
            cursor = self._db.execute(
                "INSERT INTO samples (track_key, time, area, embedding) VALUES (?, ?, ?, ?)",
                (key, time_s, area, embedding.tobytes()),
            )
            added.append((int(cursor.lastrowid or 0), embedding))
        return removed, added

    def prune(self) -> int:
        """Delete tracks past ``retention_hours`` and beyond ``max_tracks`` (oldest first)."""
        with self._lock:
            self._last_prune = now = self.clock()
            cutoff = now - self.config.retention_hours * 3600.0
            doomed = [
                int(r[0])
                for r in self._db.execute(
                    """SELECT key FROM tracks WHERE last_seen < ? OR key IN
                       (SELECT key FROM tracks ORDER BY last_seen DESC LIMIT -1 OFFSET ?)""",
                    (cutoff, self.config.max_tracks),
                )
            ]
            if not doomed:
                return 0
            marks = ",".join("?" * len(doomed))
            samples = [
                int(r[0])
                for r in self._db.execute(f"SELECT id FROM samples WHERE track_key IN ({marks})", doomed)
            ]
            self._db.execute(f"DELETE FROM tracks WHERE key IN ({marks})", doomed)
            self._ann_update(samples, [])
            gone = set(doomed)
            for ident, key in list(self._keys.items()):
                if key in gone:
                    self._keys.pop(ident, None)
                    self._pending.pop(ident, None)
            return len(doomed)

    # --- nearest neighbours ------------------------------------------------------------------

    def _rebuild_ann(self) -> None:
        rows = list(self._db.execute("SELECT id, embedding FROM samples"))
        if rows:
            self._ann_update([], [(int(i), np.frombuffer(blob, np.float32)) for i, blob in rows])

    def _ann_update(self, removed: list[int], added: list[tuple[int, np.ndarray]]) -> None:
        if self._ann is None and added:
            from usearch.index import Index

            self._dim = int(added[0][1].shape[0])
            self._ann = Index(ndim=self._dim, metric="cos", dtype="f32")
        if self._ann is None:
            return
        for key in removed:
            self._ann.remove(key)
        added = [(k, e) for k, e in added if e.shape[0] == self._dim]
        if added:
            keys = np.array([k for k, _ in added], np.uint64)
            self._ann.add(keys, np.stack([e for _, e in added]).astype(np.float32))

    # --- reads -------------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])

    def thumbnail(self, key: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT thumbnail FROM tracks WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def track_embeddings(self, camera: str, track_id: int) -> np.ndarray | None:
        """The kept embeddings of this run's track (memory first), else None."""
        with self._lock:
            pending = self._pending.get((camera, track_id))
            if pending is not None and pending.best:
                return np.stack([e for _, _, e in pending.best])
            key = self._keys.get((camera, track_id))
            if key is None:
                return None
            rows = list(self._db.execute("SELECT embedding FROM samples WHERE track_key = ?", (key,)))
        return np.stack([np.frombuffer(b, np.float32) for (b,) in rows]) if rows else None

    def search(
        self,
        query_vector: np.ndarray,
        score: ScoreFn,
        *,
        camera: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        exhaustive: bool = False,
    ) -> list[TrackHit]:
        """Tracks best first by ``score`` (the calibrated probability of their best sample).

        The usearch index proposes the nearest samples by cosine (over-fetched); with ``exhaustive``
        every sample in the time range is scored (used for one hour of footage when trying a query).
        """
        self.flush()
        with self._lock:
            where, args = ["1"], []
            for clause, value in (
                ("t.camera = ?", camera),
                ("t.last_seen >= ?", since),
                ("t.first_seen < ?", until),
            ):
                if value is not None:
                    where.append(clause)
                    args.append(value)
            if not exhaustive and self._ann is not None and len(self._ann) > 0:
                wanted = min(len(self._ann), max(512, 50 * limit))
                found = self._ann.search(np.asarray(query_vector, np.float32), wanted)
                ids = [int(k) for k in np.asarray(found.keys).ravel()]
                if not ids:
                    return []
                where.append(f"s.id IN ({','.join('?' * len(ids))})")
                args.extend(ids)
            rows = list(
                self._db.execute(
                    f"""SELECT t.key, t.camera, t.track_id, t.first_seen, t.last_seen, s.embedding
                        FROM samples s JOIN tracks t ON t.key = s.track_key WHERE {" AND ".join(where)}""",
                    args,
                )
            )
        if not rows:
            return []
        embeddings = np.stack([np.frombuffer(r[5], np.float32) for r in rows])
        scores = score(embeddings)
        best: dict[int, TrackHit] = {}
        for row, value in zip(rows, scores.tolist(), strict=True):
            hit = best.get(row[0])
            if hit is None or value > hit.score:
                best[row[0]] = TrackHit(int(row[0]), row[1], int(row[2]), row[3], row[4], float(value))
        ranked = sorted(best.values(), key=lambda h: -h.score)
        return ranked if limit <= 0 else ranked[:limit]
