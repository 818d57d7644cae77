"""Negative exemplars: crops an operator marked as false alarms, per query and camera.

A track whose crop embedding is at least ``similarity`` (cosine) to a negative exemplar of a query
on its camera has its calibrated probability for that query multiplied by ``penalty``, so the same
person-appearance does not alert again for that query, while other tracks are scored as before.
Stored in the state database (the query registry's file) so that they survive restarts.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from agent.config_rules import StrictConfigModel

_SCHEMA = """CREATE TABLE IF NOT EXISTS negative_exemplars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    alert_id TEXT,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    created_at REAL NOT NULL
)"""


class FeedbackConfig(StrictConfigModel):
    """How false-alarm marks change scoring (the ``feedback:`` section of the console settings)."""

    similarity: float = Field(
        0.92, gt=0, le=1, description="cosine at or above which a crop counts as the same"
    )
    penalty: float = Field(0.0, ge=0, lt=1, description="factor on the probability of such a crop")
    max_per_query: int = Field(200, ge=1, le=10000, description="newest exemplars kept per (query, camera)")


class ExemplarStore:
    """Negative exemplars in SQLite, with an in-memory copy the matcher reads on every sample."""

    def __init__(self, path: str | Path, config: FeedbackConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or FeedbackConfig()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)
        self._by_pair: dict[tuple[int, str], np.ndarray] = {}
        self.suppressed = 0  # samples scored down, for metrics
        self._load()

    def _load(self) -> None:
        pairs: dict[tuple[int, str], list[np.ndarray]] = {}
        rows = self._db.execute("SELECT query_id, camera_id, embedding FROM negative_exemplars ORDER BY id")
        for query_id, camera_id, blob in rows:
            pairs.setdefault((int(query_id), str(camera_id)), []).append(np.frombuffer(blob, np.float32))
        self._by_pair = {key: np.stack(vectors) for key, vectors in pairs.items()}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, query_id: int, camera_id: str, embeddings: np.ndarray, alert_id: str | None = None) -> int:
        """Store (N, D) embeddings as negatives of ``query_id`` on ``camera_id``; returns how many."""
        vectors = np.atleast_2d(np.asarray(embeddings, np.float32))
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for vector in vectors:
                    self._db.execute(
                        "INSERT INTO negative_exemplars (query_id, camera_id, alert_id, dim, embedding,"
                        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (query_id, camera_id, alert_id, int(vector.shape[0]), vector.tobytes(), now),
                    )
                self._db.execute(
                    """DELETE FROM negative_exemplars WHERE query_id = ? AND camera_id = ? AND id NOT IN
                       (SELECT id FROM negative_exemplars WHERE query_id = ? AND camera_id = ?
                        ORDER BY id DESC LIMIT ?)""",
                    (query_id, camera_id, query_id, camera_id, self.config.max_per_query),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._load()
        return len(vectors)

    def remove_alert(self, alert_id: str) -> int:
        """Forget the exemplars an alert's mark added (the mark was changed); returns how many."""
        with self._lock:
            deleted = self._db.execute(
                "DELETE FROM negative_exemplars WHERE alert_id = ?", (alert_id,)
            ).rowcount
            self._load()
        return int(deleted)

    def count(self, query_id: int | None = None) -> int:
        with self._lock:
            if query_id is None:
                return int(self._db.execute("SELECT COUNT(*) FROM negative_exemplars").fetchone()[0])
            sql = "SELECT COUNT(*) FROM negative_exemplars WHERE query_id = ?"
            return int(self._db.execute(sql, (query_id,)).fetchone()[0])

    def adjust(
        self, camera_ids: list[str], embeddings: np.ndarray, query_ids: list[int], probability: np.ndarray
    ) -> np.ndarray:
        """Probabilities (T, Q) with the pairs that look like a negative exemplar scored down.

        Args:
            camera_ids: the camera of each row of ``embeddings``.
            embeddings: (T, D) L2-normalised crop embeddings.
            query_ids: the query of each column of ``probability``.
            probability: (T, Q) calibrated probabilities.
        """
        pairs = self._by_pair
        if not pairs:
            return probability
        columns = {query_id: column for column, query_id in enumerate(query_ids)}
        cameras = np.asarray(camera_ids, dtype=object)
        adjusted = probability
        for (query_id, camera_id), negatives in pairs.items():
            column = columns.get(query_id)
            if column is None or negatives.shape[1] != embeddings.shape[1]:
                continue
            rows = np.flatnonzero(cameras == camera_id)
            if rows.size == 0:
                continue
            similar = rows[(embeddings[rows] @ negatives.T).max(axis=1) >= self.config.similarity]
            if similar.size:
                if adjusted is probability:
                    adjusted = probability.copy()
                adjusted[similar, column] *= self.config.penalty
                self.suppressed += int(similar.size)
        return adjusted
