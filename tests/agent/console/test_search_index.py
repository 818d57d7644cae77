"""The recent-track index on its real parts (SQLite file, usearch HNSW): best samples per track,
thumbnails, nearest-neighbour search with a score function, retention by age and by count, and a
rebuild from SQLite after a restart."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.matching.samples import TrackSample
from agent.search.config import SearchConfig
from agent.search.index import TrackIndex

DIM = 16
IMAGE = np.full((240, 320, 3), 90, np.uint8)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _sample(track_id: int, t: float, size: float, seed: int, camera: str = "cam") -> TrackSample:
    return TrackSample(camera, track_id, t, IMAGE, (10.0, 10.0, 10.0 + size, 10.0 + 2 * size), _unit(seed))


def test_index_keeps_the_largest_views_finds_by_score_and_prunes(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    config = SearchConfig(samples_per_track=2, retention_hours=1.0, max_tracks=3)
    index = TrackIndex(tmp_path / "search", config, clock=clock)
    # track 1: four samples, growing boxes; only the two largest stay
    index.observe([_sample(1, clock.now + i, 20 + 10 * i, seed=i) for i in range(4)])
    index.observe([_sample(2, clock.now + 1, 40, seed=100)])
    index.flush()
    kept = index.track_embeddings("cam", 1)
    assert kept is not None and len(kept) == 2
    assert {round(float(v @ _unit(3)), 4) for v in kept} >= {1.0}  # the largest view is kept
    thumbnail = index.thumbnail(1)
    assert thumbnail is not None
    image = cv2.imdecode(np.frombuffer(thumbnail, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] == config.thumbnail_height

    target = _unit(100)

    def score(embeddings: np.ndarray) -> np.ndarray:
        return np.clip(embeddings @ target, 0, 1)

    hits = index.search(target, score, limit=5)
    assert hits[0].track_id == 2 and hits[0].score > 0.99
    assert index.search(target, score, camera="other") == []
    assert index.search(target, score, since=clock.now + 3600) == []

    # a restart rebuilds the nearest-neighbour index from SQLite
    index.close()
    index = TrackIndex(tmp_path / "search", config, clock=clock)
    assert index.search(target, score, limit=1)[0].track_id == 2

    # retention: by count (max_tracks), then by age
    index.observe([_sample(i, clock.now + 10 + i, 30, seed=200 + i) for i in range(3, 6)])
    index.flush()
    assert index.count() == 5
    assert index.prune() == 2 and index.count() == 3  # the two oldest went
    clock.now += 2 * 3600
    assert index.prune() == 3 and index.count() == 0
    assert index.search(target, score) == []
    index.close()
    assert (tmp_path / "search" / "tracks.db").stat().st_size < 1_000_000
