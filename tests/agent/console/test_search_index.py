"""The recent-track index on its real parts (SQLite file, usearch HNSW): best samples per track,
thumbnails, nearest-neighbour search with a score function, retention by age and by count, and a
rebuild from SQLite after a restart. Derived data: a full disk (a real tmpfs) or a corrupt file
never raises; the index writes again once it can, or starts over with one warning."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.matching.samples import TrackSample
from agent.search.config import SearchConfig
from agent.search.index import FORGET_AFTER_S, TrackIndex
from agent.zones import inside
from tests.fixtures.small_fs import fill, small_tmpfs

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


def _search_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agent.search.index" and r.levelno >= logging.WARNING
    ]


def test_a_full_disk_keeps_samples_in_memory_until_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.search.index")
    clock = Clock(1_000_000.0)
    with small_tmpfs(tmp_path / "small", "1m") as root:
        index = TrackIndex(root / "search", SearchConfig(), clock=clock)
        index.observe([_sample(1, clock.now, 40, seed=1)])
        assert index.flush()
        filler = root / "filler.bin"
        fill(filler)
        # Writes fail while the disk is full (new tracks and a longer-known one), with one warning.
        for track in range(2, 40):
            index.observe([_sample(track, clock.now + track, 40, seed=track)])
            index.observe([_sample(1, clock.now + track, 60 + track, seed=1000 + track)])
            assert not index.flush()
        assert index.faults > 1
        assert len(_search_warnings(caplog)) == 1, _search_warnings(caplog)
        assert "disk is full" in _search_warnings(caplog)[0]
        assert index.count() <= 1  # reads go on with what is stored

        filler.unlink()
        assert index.flush()  # what was held in memory is written now
        assert index.count() == 39
        target = _unit(20)
        hits = index.search(target, lambda e: np.clip(e @ target, 0, 1), limit=1)
        assert hits[0].track_id == 20 and hits[0].score > 0.99
        assert any("writing works again" in r.getMessage() for r in caplog.records)

        # Full again at the end: closing neither raises nor hangs; the stored tracks stay.
        index.observe([_sample(99, clock.now + 99, 40, seed=99)])
        fill(filler)
        index.close()
        filler.unlink()
        reopened = TrackIndex(root / "search", SearchConfig(), clock=clock)
        assert reopened.count() == 39
        reopened.close()


def test_tracks_not_written_during_a_long_outage_leave_memory(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    with small_tmpfs(tmp_path / "small", "1m") as root:
        index = TrackIndex(root / "search", SearchConfig(), clock=clock)
        fill(root / "filler.bin")
        index.observe([_sample(track, clock.now, 40, seed=track) for track in range(5)])
        assert not index.flush()
        assert index.track_embeddings("cam", 3) is not None  # still in memory
        clock.now += FORGET_AFTER_S + 1
        assert not index.flush()
        assert index.track_embeddings("cam", 3) is None  # let go: memory does not grow with the outage
        index.close()


@pytest.mark.parametrize("damage", ["not a database", "garbage pages", "garbage pages and a stale log"])
def test_a_corrupt_index_is_replaced_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.search.index")
    clock = Clock(1_000_000.0)
    directory = tmp_path / "search"
    index = TrackIndex(directory, SearchConfig(), clock=clock)
    index.observe([_sample(track, clock.now, 40, seed=track) for track in range(200)])
    index.flush()
    index.close()
    path = directory / "tracks.db"
    data = bytearray(path.read_bytes())
    if damage == "not a database":
        data = bytearray(b"this is not SQLite" * 300)
    else:  # a valid header and first page, random pages after it
        data[4096:] = np.random.default_rng(0).integers(0, 256, len(data) - 4096, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    if damage == "garbage pages and a stale log":
        (directory / "tracks.db-wal").write_bytes(b"")

    index = TrackIndex(directory, SearchConfig(), clock=clock)
    assert index.count() == 0
    warnings = _search_warnings(caplog)
    assert len(warnings) == 1 and "replaced by a new, empty one" in warnings[0], warnings
    index.observe([_sample(7, clock.now + 1, 40, seed=7)])
    assert index.flush() and index.count() == 1
    index.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_zone_filter_counts_only_views_taken_in_the_zone_and_an_older_index_gains_the_columns(
    tmp_path: Path,
) -> None:
    """Each kept view remembers where the person stood (the box's foot point, normalised); a search
    limited to a zone scores a track by its views taken there only, and finds no track never there.
    An index file written before foot points existed is opened, gains the columns, and its old views
    are in no zone."""
    directory = tmp_path / "search"
    directory.mkdir()
    old = sqlite3.connect(directory / "tracks.db")  # the first schema, without foot points
    old.execute(
        "CREATE TABLE samples (id INTEGER PRIMARY KEY AUTOINCREMENT, track_key INTEGER NOT NULL,"
        " time REAL NOT NULL, area REAL NOT NULL, embedding BLOB NOT NULL)"
    )
    old.commit()
    old.close()
    config = SearchConfig(samples_per_track=4)
    index = TrackIndex(directory, config, clock=Clock(1_000_000.0))
    target = _unit(7)

    def score(embeddings: np.ndarray) -> np.ndarray:
        return np.clip(embeddings @ target, 0, 1)

    def view(track_id: int, x1: float, seed: int) -> TrackSample:  # 40 x 80 px, feet at x1 + 20, y 200
        return TrackSample(
            "cam", track_id, 1_000_000.0 + seed, IMAGE, (x1, 120.0, x1 + 40, 200.0), _unit(seed)
        )

    # track 1: its best view (the target itself) on the right, a weaker one on the left
    index.observe([view(1, 200.0, 7), view(1, 20.0, 8)])
    index.observe([view(2, 220.0, 9)])  # track 2: only ever on the right
    index.flush()
    left = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]

    def in_left(camera: str, x: float, y: float) -> bool:
        return camera == "cam" and inside(left, x, y)

    anywhere = index.search(target, score, exhaustive=True, limit=0)
    assert {h.track_id for h in anywhere} == {1, 2} and anywhere[0].score > 0.99
    for exhaustive in (True, False):
        zoned = index.search(target, score, exhaustive=exhaustive, limit=0, where=in_left)
        assert [h.track_id for h in zoned] == [1], "track 2 never stood in the zone"
        assert zoned[0].score == pytest.approx(float(score(_unit(8)[None])[0]), abs=1e-4), (
            "scored by the view taken in the zone, not its best view elsewhere"
        )
    db = sqlite3.connect(directory / "tracks.db")
    feet = db.execute("SELECT foot_x, foot_y FROM samples ORDER BY id").fetchall()
    db.close()
    assert sorted(feet) == sorted([(220 / 320, 200 / 240), (40 / 320, 200 / 240), (240 / 320, 200 / 240)])
    index.close()
