"""On-disk caches that make long benchmark runs resumable.

:class:`EmbeddingCache` stores embeddings per (model, kind, item list) in ``.npz`` files; while it
computes, each finished chunk is saved under a ``.partial`` folder, so an interrupted run resumes at
the first missing chunk. :class:`RerankCache` appends each LMM re-ranking result as a JSON line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def digest(*parts: str) -> str:
    """sha256 hex digest of the parts, each followed by a newline."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\n")
    return hasher.hexdigest()


def file_key(path: Path, name: str) -> str:
    """Identity of an image file for cache keys: its name, size and modification time (ns)."""
    stat = path.stat()
    return f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}"


class EmbeddingCache:
    """Embeddings keyed by model identity, kind and the exact list of items.

    Args:
        root: cache folder (created when needed).
        model_id: identity of the model (an export's manifest hash); part of every key.
    """

    def __init__(self, root: Path, model_id: str) -> None:
        self.root = root
        self.model_id = model_id

    def _stem(self, kind: str, keys: Sequence[str]) -> Path:
        return self.root / f"{kind}-{digest(self.model_id, kind, *keys)[:24]}"

    def get_or_compute(
        self,
        kind: str,
        keys: Sequence[str],
        compute: Callable[[int, int], np.ndarray],
        chunk_size: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings of ``len(keys)`` items, from the cache or by ``compute(start, stop)`` per chunk.

        Args:
            kind: "images" or "texts" (part of the key).
            keys: one string per item identifying it (text, or image file name, size and time).
            compute: embeds items ``start:stop``, returning a (stop - start, D) array.
            chunk_size: items per saved chunk.
            on_progress: called with the number of items just made available (cached or computed).
        """
        stem = self._stem(kind, keys)
        final = stem.with_suffix(".npz")
        if final.is_file():
            with np.load(final) as data:
                embeddings = np.asarray(data["embeddings"])
            if len(embeddings) == len(keys):
                log.info("%s: %d embeddings from cache %s", kind, len(keys), final)
                if on_progress:
                    on_progress(len(keys))
                return embeddings
            log.warning("cache %s has %d rows for %d items; recomputing", final, len(embeddings), len(keys))
        partial = stem.with_suffix(".partial")
        partial.mkdir(parents=True, exist_ok=True)
        chunks: list[np.ndarray] = []
        resumed = 0
        for number, start in enumerate(range(0, len(keys), chunk_size)):
            stop = min(start + chunk_size, len(keys))
            chunk_file = partial / f"{number:06d}.npy"
            chunk: np.ndarray | None = None
            if chunk_file.is_file():
                try:
                    chunk = np.load(chunk_file, allow_pickle=False)
                except (OSError, ValueError):
                    chunk = None
                if chunk is not None and len(chunk) != stop - start:
                    chunk = None
                if chunk is not None:
                    resumed += len(chunk)
            if chunk is None:
                chunk = np.asarray(compute(start, stop), np.float32)
                if len(chunk) != stop - start:
                    raise ValueError(f"embedding {kind} {start}:{stop} returned {len(chunk)} rows")
                temporary = chunk_file.with_suffix(".tmp.npy")
                np.save(temporary, chunk)
                os.replace(temporary, chunk_file)
            chunks.append(chunk)
            if on_progress:
                on_progress(stop - start)
        if resumed:
            log.info("%s: resumed %d of %d embeddings from %s", kind, resumed, len(keys), partial)
        embeddings = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
        temporary = stem.with_suffix(".tmp.npz")
        with temporary.open("wb") as handle:
            np.savez(handle, embeddings=embeddings)
        os.replace(temporary, final)
        shutil.rmtree(partial, ignore_errors=True)
        return embeddings


class RerankCache:
    """Re-ranking results as JSON lines ``{"query": q, "image": g, "outcome": {...}}``, appended as made.

    Args:
        path: the JSONL file; its name should hold a digest of everything that changes the results.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[tuple[int, int], dict[str, Any]] = {}
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        self.done[(int(record["query"]), int(record["image"]))] = record["outcome"]
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue  # a line cut short by an interruption
            log.info("re-ranking: resumed %d results from %s", len(self.done), path)

    def get(self, query: int, image: int) -> dict[str, Any] | None:
        return self.done.get((query, image))

    def put(self, query: int, image: int, outcome: dict[str, Any]) -> None:
        self.done[(query, image)] = outcome
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"query": query, "image": image, "outcome": outcome}) + "\n")
