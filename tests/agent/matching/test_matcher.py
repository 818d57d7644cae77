"""The matcher with a real (tiny, random) CLIP export: sampling, scores for every pair, the query
bank's cache and hot reload, and the decision core's candidates across cameras from its samples."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.decision.core import DecisionCore
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.matching.querybank import QueryBank
from agent.queries import QueryRegistry, QueryUpdate
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 255, (240, 320, 3), dtype=np.uint8)


class CountingEncoder:
    """The real encoder, counting what it is asked to embed."""

    def __init__(self, encoder: ClipEncoder) -> None:
        self.encoder = encoder
        self.regions: list[int] = []
        self.texts: list[str] = []

    @property
    def manifest_hash(self) -> str:
        return self.encoder.manifest_hash

    @property
    def logit_scale(self) -> float:
        return self.encoder.logit_scale

    def embed_regions(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray:
        self.regions.append(len(regions))
        return self.encoder.embed_regions(regions)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.encoder.embed_texts(texts)


@pytest.fixture
def encoder(clip_fp32: Path) -> CountingEncoder:
    return CountingEncoder(ClipEncoder.load(clip_fp32, providers=["cpu"]))


def result(camera: str, index: int, t: float, boxes: list[list[float]], ids: list[int]) -> FrameResult:
    frame = Frame(camera, index, t, t, FRAME)
    tracks = Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.9, np.float32),
        class_id=np.zeros(len(boxes), np.int64),
        tracker_id=np.array(ids, np.int64),
    )
    return FrameResult(frame, tracks, [])


def test_scores_for_every_track_and_query_pair(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    ids = [registry.add(t).id for t in ("a person falling down", "a man running", "a child on a bicycle")]
    registry.add("a person lying on the ground", cameras=["other"])  # not for camera "cam"
    matcher = Matcher(MatchingConfig(), encoder, registry)
    frame = result("cam", 0, 100.0, [[10, 10, 60, 150], [100, 20, 150, 200], [200, 50, 260, 230]], [1, 2, 3])
    matcher.process([frame])
    scores = frame.extra["samples"]
    assert set(scores) == {"1", "2", "3"}
    assert frame.extra["columns"] == [
        [q.id, h] for q, h in zip(matcher.queries, matcher.bank.matrix.text_hashes, strict=True)
    ]
    for per_query in scores.values():
        assert set(per_query) == {str(i) for i in ids}
        assert all(0.0 <= value <= 1.0 for value in per_query.values())
    assert encoder.regions == [3], "the three crops are embedded in one call"


def test_sampling_first_seen_interval_and_shape_change(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    registry.add("a person falling down")
    matcher = Matcher(MatchingConfig(embed_interval_s=1.0, shape_change=0.3), encoder, registry)
    box = [10.0, 10.0, 60.0, 150.0]
    # t = 0: first seen, embedded; t = 0.5: same shape, not embedded; t = 1.0: interval, embedded
    for index, t in enumerate([0.0, 0.5, 1.0]):
        matcher.process([result("cam", index, t, [box], [7])])
    assert encoder.regions == [1, 1]
    # t = 1.2: the box turns wide (someone falling): embedded before the interval is up
    matcher.process([result("cam", 3, 1.2, [[10.0, 100.0, 150.0, 150.0]], [7])])
    assert encoder.regions == [1, 1, 1]
    # two cameras in one batch share one call
    matcher.process([result("cam", 4, 5.0, [box], [7]), result("cam2", 0, 5.0, [box, box], [1, 2])])
    assert encoder.regions[-1] == 3


def test_removed_tracks_are_forgotten_and_history_is_bounded(
    tmp_path: Path, encoder: CountingEncoder
) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    registry.add("a person falling down")
    matcher = Matcher(MatchingConfig(embed_interval_s=0.1, history=3), encoder, registry)
    for index in range(6):
        matcher.process([result("cam", index, index * 1.0, [[10, 10, 60, 150]], [7])])
    assert len(matcher.tracks[("cam", 7)].embeddings) == 3
    gone = result("cam", 6, 6.0, [], [])
    gone.events.append(TrackEvent(TrackEventKind.REMOVED, "cam", 7, 6, 0.0, 5.0, 6))
    matcher.process([gone])
    assert ("cam", 7) not in matcher.tracks


def test_query_embeddings_cached_per_model_and_text(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    query = registry.add("a person falling down")
    config = MatchingConfig(templates=["{}", "a photo of {}."], normal_prompts=["a person walking"])
    QueryBank(registry, encoder, config).refresh(force=True)
    assert encoder.texts == ["a person falling down", "a photo of a person falling down.", "a person walking"]
    encoder.texts.clear()
    bank = QueryBank(registry, encoder, config)  # a restart: the query comes from the cache
    bank.refresh(force=True)
    assert encoder.texts == ["a person walking"]
    expected = encoder.encoder.embed_texts(["a person falling down", "a photo of a person falling down."])
    mean = expected.mean(axis=0)
    np.testing.assert_allclose(bank.matrix.embeddings[0], mean / np.linalg.norm(mean), atol=1e-5)

    registry.update(query.id, QueryUpdate(text="a person falling off a ladder"))
    encoder.texts.clear()
    bank.refresh(force=True)
    assert "a person falling off a ladder" in encoder.texts, "an edited text is embedded again"


def test_registry_changes_reach_the_matcher_within_a_second(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    first = registry.add("a person falling down")
    matcher = Matcher(MatchingConfig(refresh_s=0.25), encoder, registry)
    other = QueryRegistry(tmp_path / "w.db")  # the CLI or the API, in another connection
    added = other.add("a man running")
    other.set_enabled(first.id, False)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and matcher.bank.matrix.ids != [added.id]:
        frame = result("cam", 0, time.time(), [[10, 10, 60, 150]], [1])
        matcher.process([frame])
        time.sleep(0.05)
    assert matcher.bank.matrix.ids == [added.id]
    assert set(frame.extra["samples"]["1"]) == {str(added.id)}, "the new query is sampled at once"
    assert frame.extra["columns"] == [[added.id, matcher.bank.matrix.text_hashes[0]]]


def test_each_camera_window_gives_its_best_tracks_per_query(tmp_path: Path, encoder: CountingEncoder) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    query = registry.add("a person falling down", threshold=0.01, severity="critical", cooldown_s=5.0)
    events: list[AlertEvent] = []
    config = MatchingConfig(window_s=2.0, top_k=2, embed_interval_s=0.5, select_on_entry=False)
    matcher = Matcher(config, encoder, registry, model_versions={"detector": "x"})
    core = DecisionCore(
        config, AlertsConfig(), matcher.query, events.extend, model_versions=matcher.model_versions
    )
    boxes: list[list[float]] = [[10, 10, 60, 150], [100, 20, 150, 200], [200, 50, 260, 230]]
    for step in range(6):  # media time 0 .. 2.5 s; wall time far away and running faster
        t = step * 0.5
        frame_a = Frame("a", step, t, 1000.0 + step * 0.1, FRAME)
        frame_b = Frame("b", step, t, 1000.0 + step * 0.1, FRAME)
        batch = [
            _with_frame(result("a", step, t, boxes, [1, 2, 3]), frame_a),
            _with_frame(result("b", step, t, boxes[:1], [9]), frame_b),
        ]
        matcher.process(batch)
        core.process(batch)
    assert core.stats().windows == 2, "one window of 2 media seconds per camera (at pts 2.0)"
    opens = [e.candidate for e in events if e.kind is AlertEventKind.OPENED and e.candidate is not None]
    by_camera = {c: [o for o in opens if o.camera_id == c] for c in ("a", "b")}
    assert len(by_camera["a"]) == 2 and len(by_camera["b"]) == 1, "top_k tracks per (camera, query)"
    assert by_camera["a"][0].score >= by_camera["a"][1].score
    for candidate in by_camera["a"] + by_camera["b"]:
        assert candidate.query_id == query.id and candidate.severity == "critical"
        assert candidate.cooldown_s == 5.0, "the query's own cooldown travels with the candidate"
        assert candidate.model_versions == {"clip": encoder.manifest_hash, "detector": "x"}
        assert candidate.score_history and candidate.frame.shape == FRAME.shape
        assert candidate.media_time == 2.0, "chosen at the window boundary, in media time"
        # the box and frame index are those of the sample the score came from
        assert candidate.frame_index == 4 and candidate.wall_time == 1000.4
        expected = boxes[[1, 2, 3].index(candidate.track_id)] if candidate.camera_id == "a" else boxes[0]
        assert candidate.box == tuple(float(v) for v in expected)


def _with_frame(result: FrameResult, frame: Frame) -> FrameResult:
    return FrameResult(frame, result.tracks, result.events)
