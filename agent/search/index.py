"""The recent-track index: SQLite for tracks, samples and thumbnails; usearch for nearest neighbours.

Each track keeps its ``samples_per_track`` crop embeddings with the largest boxes (the clearest views),
each with where the person stood (the box's foot point, for searches limited to zones), and one
thumbnail. The matcher hands samples over on its thread (:meth:`observe`, memory only);
a background thread writes them every ``flush_interval_s`` and applies retention. SQLite is the
record; the usearch HNSW index over the sample embeddings is rebuilt from it at start.

The index is derived data: it never stops the agent. A write the disk refuses (full, read-only,
locked) is logged once as a warning, the samples stay in memory and are written once the disk takes
them again (tracks unseen for :data:`FORGET_AFTER_S` meanwhile are let go). A file that is not, or no
longer, a database is replaced by a new, empty index with one warning. Reads that fail return
nothing. Only :class:`TrackIndex` opened ``read_only`` (the ``watchword search`` command) raises.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.api.metrics import Metric
from agent.matching.samples import TrackSample
from agent.search.config import SearchConfig
from agent.sqlite_files import connect_read_only, is_corrupt
from agent.zones import foot_point

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
        embedding BLOB NOT NULL,
        foot_x REAL,
        foot_y REAL
    )""",
    "CREATE INDEX IF NOT EXISTS samples_track ON samples (track_key)",
]
# Columns added since the first schema (an index written by an older agent gains them, NULL: its
# samples have no foot point and are in no zone).
_ADDED_COLUMNS = {"samples": (("foot_x", "REAL"), ("foot_y", "REAL"))}
FORGET_AFTER_S = 30.0  # a flushed track unseen this long leaves memory (it stays in the database)
BUSY_TIMEOUT_S = 1.0  # a write waits this long for another process's lock (the matcher may wait on it)
REPLACE_AFTER_S = 60.0  # a database found corrupt again this soon after a replacement is left alone


@dataclass
class _Pending:
    camera: str
    track_id: int
    first_seen: float
    last_seen: float
    # area, time, embedding, foot point (normalised; where the person stood, for zones)
    best: list[tuple[float, float, np.ndarray, tuple[float, float]]] = field(default_factory=list)
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
    foot: tuple[float, float] | None = None  # where the view that scored was taken (normalised)

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "camera": self.camera,
            "track_id": self.track_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "score": round(self.score, 4),
            "foot": None if self.foot is None else [round(self.foot[0], 4), round(self.foot[1], 4)],
            "thumbnail": f"/search/thumbnails/{self.key}.jpg",
        }


# (N, D) L2-normalised embeddings -> (N,) calibrated probabilities for one query
ScoreFn = Callable[[np.ndarray], np.ndarray]
# camera id, foot point x, y (normalised) -> whether a sample taken there counts (zones)
FootFilter = Callable[[str, float, float], bool]


class TrackIndex:
    """Recent tracks of all cameras. Thread-safe.

    Args:
        directory: the folder of ``tracks.db`` (created).
        config: the ``search`` section.
        clock: UNIX seconds (retention).
        read_only: open an existing index without writing anything (``watchword search``, beside a
            running agent or on a read-only folder); errors raise instead of being logged.
    """

    def __init__(
        self,
        directory: Path,
        config: SearchConfig,
        *,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.path = directory / "tracks.db"
        self.read_only = read_only
        self.run = int(clock() * 1000)
        self.faults = 0  # failed reads and writes (each counts; only the first of a series is a warning)
        self._failing = False
        self._replaced_at = -float("inf")
        self._lock = threading.RLock()
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._keys: dict[tuple[str, int], int] = {}
        self._ann: Any = None  # usearch.index.Index, made when the first embedding's size is known
        self._dim: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = -float("inf")
        self._db: sqlite3.Connection | None = None
        self._feet = True  # the samples table has foot points (a writable index gains them)
        if read_only:
            self._db = connect_read_only(self.path, check_same_thread=False)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(samples)")}
            self._feet = {"foot_x", "foot_y"} <= columns  # an index written by an older agent has none
            self._rebuild_ann()
        else:
            self._open()

    # --- the database ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            for statement in _SCHEMA:
                db.execute(statement)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns:
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> bool:
        """Open (or create) the database and rebuild the neighbours from it; False when it cannot."""
        with self._lock:
            if self._db is not None:
                return True
            try:
                self._db = self._connect()
                self._rebuild_ann()
            except (sqlite3.Error, OSError) as exc:
                self._fault("open", exc)
                return self._db is not None
            return True

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as exc:
                log.debug("search index: closing %s failed: %s", self.path, exc)

    def _fault(self, action: str, exc: BaseException) -> None:
        """A read or write failed: replace a corrupt file (then reopen), else log and go on.

        The first fault of a series is a warning, later ones are debug lines until a write works.
        """
        if self.read_only:
            raise exc
        self.faults += 1
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        now = time.monotonic()
        if is_corrupt(exc) and now - self._replaced_at >= REPLACE_AFTER_S:
            self._replaced_at = now
            self._close_db()
            try:
                for suffix in ("", "-journal", "-wal", "-shm"):
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
                self._db = self._connect()
            except (sqlite3.Error, OSError) as error:
                log.log(
                    level,
                    "search index %s was corrupt (%s) and cannot be replaced: %s",
                    self.path,
                    exc,
                    error,
                )
                return
            # Everything known in memory goes into the new file; the neighbours start over.
            self._keys.clear()
            self._ann, self._dim = None, None
            for pending in self._pending.values():
                pending.dirty = True
            log.log(level, "search index %s was corrupt (%s): replaced by a new, empty one", self.path, exc)
            self._failing = False
            return
        log.log(
            level,
            "search index %s: cannot %s (%s: %s); the agent goes on without it and retries",
            self.path,
            action,
            type(exc).__name__,
            exc,
        )

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection | None]:
        """The connection for a read, or None (nothing to read); a failed read is a fault, not an error."""
        with self._lock:
            try:
                yield self._db
            except (sqlite3.Error, OSError) as exc:
                self._fault(action, exc)

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="search-index", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the writer, write what is left if the disk takes it, close; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            if not self.read_only:
                self.flush()
            self._close_db()

    def _run(self) -> None:
        while not self._stop.wait(self.config.flush_interval_s):
            self.flush()
            if self.clock() - self._last_prune >= 60.0:
                self.prune()

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
                    height, width = sample.image.shape[:2]
                    foot = foot_point(sample.box, width, height)
                    pending.best.append((area, sample.time_s, np.asarray(sample.embedding, np.float32), foot))
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

    def flush(self) -> bool:
        """Write the tracks that changed since the last flush; forget long-unseen ones from memory.

        Returns whether the changes are written. A write that fails leaves them in memory for the
        next flush (the first failure is a warning); tracks unseen for :data:`FORGET_AFTER_S` are
        then forgotten all the same, so a long outage does not grow memory.
        """
        now = self.clock()
        with self._lock:
            dirty = [p for p in self._pending.values() if p.dirty]
            written = not dirty or self.read_only
            if not written and (self._db is not None or self._open()):
                written = self._write_all(dirty)
            for key, pending in list(self._pending.items()):
                if (not pending.dirty or not written) and now - pending.last_seen > FORGET_AFTER_S:
                    del self._pending[key]
                    self._keys.pop(key, None)
            return written

    def _write_all(self, dirty: list[_Pending]) -> bool:
        """One transaction for the ``dirty`` tracks; True once committed."""
        db = self._db
        assert db is not None
        new_keys: dict[tuple[str, int], int] = {}
        try:
            if db.in_transaction:  # a COMMIT that failed (disk full) leaves the transaction open
                db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            try:
                written = [(p, self._write(db, p, new_keys)) for p in dirty]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            self._fault("write", exc)
            return False
        # Only a committed row's key is remembered: a rolled-back one would be referenced later.
        self._keys.update(new_keys)
        for pending, (removed, added) in written:
            pending.dirty = False
            self._ann_update(removed, added)
        if self._failing:
            self._failing = False
            log.info("search index %s: writing works again", self.path)
        return True

    def _write(
        self, db: sqlite3.Connection, pending: _Pending, new_keys: dict[tuple[str, int], int]
    ) -> tuple[list[int], list[tuple[int, np.ndarray]]]:
        ident = (pending.camera, pending.track_id)
        key = self._keys.get(ident)
        if key is None:
            cursor = db.execute(
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
            key = new_keys[ident] = int(cursor.lastrowid or 0)
        else:
            db.execute(
                "UPDATE tracks SET last_seen = ?, thumbnail = ? WHERE key = ?",
                (pending.last_seen, pending.thumbnail, key),
            )
        removed = [int(r[0]) for r in db.execute("SELECT id FROM samples WHERE track_key = ?", (key,))]
        db.execute("DELETE FROM samples WHERE track_key = ?", (key,))
        added = []
        for area, time_s, embedding, (foot_x, foot_y) in pending.best:
            cursor = db.execute(
                "INSERT INTO samples (track_key, time, area, embedding, foot_x, foot_y)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, time_s, area, embedding.tobytes(), foot_x, foot_y),
            )
            added.append((int(cursor.lastrowid or 0), embedding))
        return removed, added

    def prune(self) -> int:
        """Delete tracks past ``retention_hours`` and beyond ``max_tracks`` (oldest first); 0 when the
        database cannot be written."""
        with self._lock:
            self._last_prune = now = self.clock()
            db = self._db
            if db is None or self.read_only:
                return 0
            cutoff = now - self.config.retention_hours * 3600.0
            try:
                doomed = [
                    int(r[0])
                    for r in db.execute(
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
                    for r in db.execute(f"SELECT id FROM samples WHERE track_key IN ({marks})", doomed)
                ]
                db.execute(f"DELETE FROM tracks WHERE key IN ({marks})", doomed)
            except (sqlite3.Error, OSError) as exc:
                self._fault("prune", exc)
                return 0
            self._ann_update(samples, [])
            gone = set(doomed)
            for ident, key in list(self._keys.items()):
                if key in gone:
                    self._keys.pop(ident, None)
                    self._pending.pop(ident, None)
            return len(doomed)

    # --- nearest neighbours ------------------------------------------------------------------

    def _rebuild_ann(self) -> None:
        assert self._db is not None
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

    def metrics(self) -> list[Metric]:
        """Tracks the index holds and its failed reads and writes (rebuilt or skipped, never fatal)."""
        return [
            Metric("watchword_search_tracks", "gauge", "Tracks in the search index").add(self.count()),
            Metric("watchword_search_faults_total", "counter", "Failed search index reads and writes").add(
                self.faults
            ),
        ]

    def count(self) -> int:
        with self._reading("count") as db:
            return 0 if db is None else int(db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0])
        return 0

    def thumbnail(self, key: int) -> bytes | None:
        row = None
        with self._reading("read a thumbnail") as db:
            if db is not None:
                row = db.execute("SELECT thumbnail FROM tracks WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def track_embeddings(self, camera: str, track_id: int) -> np.ndarray | None:
        """The kept embeddings of this run's track (memory first), else None."""
        rows: list[Any] = []
        with self._reading("read a track") as db:
            pending = self._pending.get((camera, track_id))
            if pending is not None and pending.best:
                return np.stack([e for _, _, e, _ in pending.best])
            key = self._keys.get((camera, track_id))
            if key is None or db is None:
                return None
            rows = list(db.execute("SELECT embedding FROM samples WHERE track_key = ?", (key,)))
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
        where: FootFilter | None = None,
    ) -> list[TrackHit]:
        """Tracks best first by ``score`` (the calibrated probability of their best sample).

        With ``where`` (camera, foot x, foot y normalised -> kept), only samples it keeps count: a
        track is found by the samples taken where it stood in a query's zones, scored by the best of
        them (samples without a foot point, from an older index, are never kept).

        The usearch index proposes the nearest samples by cosine (over-fetched); with ``exhaustive``
        every sample in the time range is scored (used for one hour of footage when trying a query).
        Tracks the database does not hold (it refused them, or it cannot be read) are not found.
        """
        self.flush()
        rows: list[Any] = []
        with self._reading("search") as db:
            if db is None:
                return []
            clauses, args = ["1"], []
            feet = ", s.foot_x, s.foot_y" if self._feet else ", NULL, NULL"
            for clause, value in (
                ("t.camera = ?", camera),
                ("t.last_seen >= ?", since),
                ("t.first_seen < ?", until),
            ):
                if value is not None:
                    clauses.append(clause)
                    args.append(value)
            if not exhaustive and self._ann is not None and len(self._ann) > 0:
                wanted = min(len(self._ann), max(512, 50 * limit))
                found = self._ann.search(np.asarray(query_vector, np.float32), wanted)
                ids = [int(k) for k in np.asarray(found.keys).ravel()]
                if not ids:
                    return []
                clauses.append(f"s.id IN ({','.join('?' * len(ids))})")
                args.extend(ids)
            rows = list(
                db.execute(
                    f"""SELECT t.key, t.camera, t.track_id, t.first_seen, t.last_seen, s.embedding{feet}
                        FROM samples s JOIN tracks t ON t.key = s.track_key WHERE {" AND ".join(clauses)}""",
                    args,
                )
            )
        if where is not None:
            rows = [r for r in rows if r[6] is not None and r[7] is not None and where(r[1], r[6], r[7])]
        if not rows:
            return []
        embeddings = np.stack([np.frombuffer(r[5], np.float32) for r in rows])
        scores = score(embeddings)
        best: dict[int, TrackHit] = {}
        for row, value in zip(rows, scores.tolist(), strict=True):
            hit = best.get(row[0])
            if hit is None or value > hit.score:
                foot = None if row[6] is None or row[7] is None else (float(row[6]), float(row[7]))
                best[row[0]] = TrackHit(int(row[0]), row[1], int(row[2]), row[3], row[4], float(value), foot)
        ranked = sorted(best.values(), key=lambda h: -h.score)
        return ranked if limit <= 0 else ranked[:limit]
