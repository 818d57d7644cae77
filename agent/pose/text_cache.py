"""A persistent cache of sentence embeddings: text -> float32 unit vector, per model version.

The embeddings are a pure function of the model's files and the text, so the start need not load
all-MiniLM-L6-v2 to embed the same cue phrases and standing queries again. They are kept in one SQLite
file under ``<state_dir>/cache/`` (derived data: deleting it only costs one slower start). Rows carry
the model's version and a lookup never returns another version's rows.

The cache can only make the start faster, never stop it: an unwritable or full state directory, a file
that is not a database, or another process holding it locked is logged once (a warning) and the caller
computes the embeddings itself; a corrupt file is replaced by a new one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
TEXT_CACHE_FILE = "text-embeddings.sqlite"
BUSY_TIMEOUT_S = 1.0
"""How long a lookup or store waits for another process's write lock before it gives up."""
RETRY_AFTER_S = 60.0
"""After a fault the cache is left alone this long: a locked or full file costs the start one wait."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS text_embeddings ("
    " model TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, text))"
)  # a rowid table: rows of 1.5 KiB fill the pages of a WITHOUT ROWID table badly
# sqlite3 result codes (``sqlite3.Error.sqlite_errorcode``) of a file that is not, or no longer, a database
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_MAX_PARAMETERS = 500  # per IN (...) lookup: well under SQLite's limit of bound parameters


def text_cache_path(state_dir: Path) -> Path:
    """``<state_dir>/cache/text-embeddings.sqlite``."""
    return Path(state_dir) / CACHE_DIR / TEXT_CACHE_FILE


class TextEmbeddingCache:
    """Embeddings of one model version in a SQLite file; safe to share between threads and processes.

    Args:
        path: the SQLite file (created, with its folder, on the first store).
        model_version: rows of other versions are never returned.
        dim: the embedding width; a stored vector of another width is ignored.
        busy_timeout_s: how long to wait for another process's lock before computing without the cache.
    """

    def __init__(
        self, path: Path, model_version: str, dim: int, busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self.model_version = model_version
        self.dim = dim
        self.busy_timeout_s = busy_timeout_s
        self.faults = 0
        self._lock = threading.Lock()
        self._rebuilt = False
        self._suspended_until = -float("inf")

    def _usable(self) -> bool:
        return time.monotonic() >= self._suspended_until

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those texts that have one (none when the cache cannot be read)."""
        wanted = list(dict.fromkeys(texts))
        if not wanted:
            return {}
        with self._lock:
            if not self._usable() or not self.path.exists():
                return {}
            try:
                return self._select(wanted)
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # an empty database: nothing stored yet
                    return {}
                self._fault("read", exc)
            except (sqlite3.Error, OSError) as exc:
                self._fault("read", exc)
            return {}

    def store(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep these vectors (rows of ``dim`` float32); does nothing but log when it cannot write."""
        rows = [
            (self.model_version, text, np.asarray(vector, np.float32).tobytes())
            for text, vector in vectors.items()
            if np.asarray(vector).shape == (self.dim,)
        ]
        if not rows:
            return
        with self._lock:
            if not self._usable():
                return
            try:
                self._insert(rows)
            except (sqlite3.Error, OSError) as exc:
                self._fault("write", exc)

    def _connect(self, create: bool) -> sqlite3.Connection:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"{self.path.absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
        connection = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_s, check_same_thread=False)
        return connection

    def _select(self, texts: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with closing(self._connect(create=False)) as connection:
            for start in range(0, len(texts), _MAX_PARAMETERS):
                chunk = texts[start : start + _MAX_PARAMETERS]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT text, vector FROM text_embeddings WHERE model = ? AND text IN ({marks})"
                for text, blob in connection.execute(query, (self.model_version, *chunk)):
                    if isinstance(blob, bytes) and len(blob) == 4 * self.dim:
                        found[text] = np.frombuffer(blob, np.float32)
        return found

    def _insert(self, rows: list[tuple[str, str, bytes]]) -> None:
        with closing(self._connect(create=True)) as connection, connection:
            connection.execute(_SCHEMA)
            connection.executemany("INSERT OR REPLACE INTO text_embeddings VALUES (?, ?, ?)", rows)

    def _fault(self, action: str, exc: BaseException) -> None:
        """Log the first fault as a warning (later ones at debug); replace a corrupt file once, else
        leave the cache alone for :data:`RETRY_AFTER_S`."""
        self.faults += 1
        level = logging.WARNING if self.faults == 1 else logging.DEBUG
        corrupt = getattr(exc, "sqlite_errorcode", None) in {_SQLITE_CORRUPT, _SQLITE_NOTADB}
        if corrupt and not self._rebuilt:
            self._rebuilt = True
            try:
                for suffix in ("", "-journal", "-wal", "-shm"):
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            except OSError as unlink_error:
                exc = unlink_error  # reported below
            else:
                log.log(
                    level, "text-embedding cache %s was corrupt (%s): replaced by a new one", self.path, exc
                )
                return
        self._suspended_until = time.monotonic() + RETRY_AFTER_S
        log.log(
            level,
            "text-embedding cache %s: cannot %s (%s: %s); computing the embeddings without it",
            self.path,
            action,
            type(exc).__name__,
            exc,
        )
