"""Zones in the CLIP matcher (real tiny CLIP export, real SQLite registry and camera store): a
zone-limited query is sampled only while a track's foot point is in its zone, and a zone drawn on
the running camera (the camera store's revision) takes effect without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cameras.store import CameraStore
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.queries import QueryRegistry
from agent.zones import ZoneBook
from tests.agent.matching.test_matcher import CountingEncoder, result

# FRAME is 320 x 240; the zone is the left half of the image
LEFT_HALF = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
INSIDE = [20.0, 20.0, 80.0, 200.0]  # foot point (50, 200): x 0.16
OUTSIDE = [200.0, 20.0, 260.0, 200.0]  # foot point (230, 200): x 0.72


@pytest.fixture
def encoder(clip_fp32: Path) -> CountingEncoder:
    return CountingEncoder(ClipEncoder.load(clip_fp32, providers=["cpu"]))


def test_zone_limited_query_samples_only_inside(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    anywhere = registry.add("a person standing").id
    zoned = registry.add("a person standing at the door", zones=["door"]).id
    store = CameraStore(tmp_path / "state.db")
    store.add({"id": "cam", "uri": "test://ball", "zones": [{"name": "door", "points": LEFT_HALF}]})
    book = ZoneBook(store.list_cameras, store.revision, interval_s=0.0)
    matcher = Matcher(MatchingConfig(embed_interval_s=0.1), encoder, registry, zones=book)
    frame = result("cam", 0, 1.0, [INSIDE, OUTSIDE], [1, 2])
    matcher.process([frame])
    samples = frame.extra["samples"]
    assert set(samples["1"]) == {str(anywhere), str(zoned)}
    assert set(samples["2"]) == {str(anywhere)}, "outside the zone: the zoned query is not sampled"
    # another camera without a zone of that name: never sampled for it
    other = result("cam2", 0, 1.0, [INSIDE], [1])
    matcher.process([other])
    assert set(other.extra["samples"]["1"]) == {str(anywhere)}
    # the operator moves the zone to the right half: read at once from the store, no restart
    store.update("cam", {"zones": [{"name": "door", "points": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]})
    moved = result("cam", 1, 2.0, [INSIDE, OUTSIDE], [1, 2])
    matcher.process([moved])
    assert set(moved.extra["samples"]["1"]) == {str(anywhere)}
    assert set(moved.extra["samples"]["2"]) == {str(anywhere), str(zoned)}
    store.close()
    registry.close()
