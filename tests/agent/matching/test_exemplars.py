"""Negative exemplars from false-alarm marks, through the real matcher with the tiny CLIP export on
people the SSD detector finds in the sample video.

The tiny CLIP has random weights, so it tells people apart only weakly: the similarity setting is
placed from measured cosines (the same person two frames later vs. the least similar other person),
and the test checks that precondition instead of assuming it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.alerts import AlertManager
from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent
from agent.decision.core import DecisionCore
from agent.detection import build_detector
from agent.detection.config import SSDDetectorConfig
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import ExemplarStore, FeedbackConfig
from agent.matching.matcher import Matcher
from agent.queries import QueryRegistry
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind


def _frames(video: Path, indices: tuple[int, ...]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < len(indices):
        ok, image = capture.read()
        assert ok, "the sample video ended early"
        if index in indices:
            frames.append(image)
        index += 1
    return frames


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


class AlertingSink:
    """The decision core's events into a real alert manager (no re-ranker): who alerted."""

    def __init__(self, alerts: AlertManager) -> None:
        self.alerts = alerts
        self.opened: list[int] = []

    def __call__(self, events: list[AlertEvent]) -> None:
        for event in events:
            if self.alerts.emit(event) and event.kind.value == "opened":
                self.opened.append(event.episode.track_id)


def _result(image: np.ndarray, index: int, t: float, boxes: list[np.ndarray], ids: list[int]) -> FrameResult:
    tracks = Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.9, np.float32),
        class_id=np.zeros(len(boxes), np.int64),
        tracker_id=np.array(ids, np.int64),
    )
    return FrameResult(Frame("cam", index, t, t, image), tracks, [])


@pytest.mark.slow
def test_false_alarm_look_alike_is_scored_down_while_other_tracks_still_alert(
    tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> None:
    first, later = _frames(sample_video, (100, 101))
    detector = build_detector(SSDDetectorConfig(type="ssd-mobilenet"))
    try:
        boxes_first, boxes_later = (d.xyxy for d in detector.detect([first, later]))
    finally:
        detector.close()
    encoder = ClipEncoder.load(clip_fp32, providers=["cpu"])
    # the same person one frame later: the best-overlapping box (a tracker would keep the id)
    pairs = []
    for i, box in enumerate(boxes_first):
        j = max(range(len(boxes_later)), key=lambda k: _iou(box, boxes_later[k]))
        if _iou(box, boxes_later[j]) > 0.6:
            pairs.append((i, j))
    assert len(pairs) >= 2, "needs two people seen in both frames"
    emb_first = encoder.embed_regions([(first, tuple(b)) for b in boxes_first])
    emb_later = encoder.embed_regions([(later, tuple(b)) for b in boxes_later])
    # the marked person (a) and the other person (b) least like them
    a, a_later = pairs[0]
    b, b_later = min(pairs[1:], key=lambda p: float(emb_first[a] @ emb_later[p[1]]))
    same = float(emb_first[a] @ emb_later[a_later])
    other = float(emb_first[a] @ emb_later[b_later])
    assert same > other + 0.002, (
        f"precondition: the same person ({same:.4f}) is closer than another ({other:.4f})"
    )
    similarity = (same + other) / 2

    registry = QueryRegistry(tmp_path / "w.db")
    query = registry.add("a person", threshold=0.01)
    exemplars = ExemplarStore(tmp_path / "w.db", FeedbackConfig(similarity=similarity, penalty=0.0))
    # per-person cooldown longer than the test: a person alerts once; a new id is a new person
    alerts = AlertManager(
        AlertsConfig(database=tmp_path / "alerts.db", evidence_dir=tmp_path / "evidence", cooldown_s=3600),
        "test",
        sinks=[],
    )
    alerts.start()
    sink = AlertingSink(alerts)
    config = MatchingConfig(window_s=1.0, embed_interval_s=0.5, pool_window_s=2.0)
    matcher = Matcher(config, encoder, registry, exemplars=exemplars)
    core = DecisionCore(config, alerts.config, matcher.query, sink)

    def analyse(results: list[FrameResult]) -> None:
        matcher.process(results)
        core.process(results)

    def run(image: np.ndarray, boxes: list[np.ndarray], ids: list[int], start: float) -> set[int]:
        sink.opened.clear()
        for step in range(12):  # 6 s of frames at 2 per second
            t = start + step * 0.5
            analyse([_result(image, int(t * 10), t, boxes, ids)])
        return set(sink.opened)

    # both people alert at first
    assert run(first, [boxes_first[a], boxes_first[b]], [1, 2], 100.0) == {1, 2}
    # the operator marks track 1's alert a false alarm: its crop embeddings become negatives
    assert exemplars.add(query.id, "cam", np.stack(list(matcher.tracks[("cam", 1)].embeddings))) > 0
    # both tracks end
    gone = [TrackEvent(TrackEventKind.REMOVED, "cam", i, 80, 100.0, 103.5, 8) for i in (1, 2)]
    analyse([FrameResult(Frame("cam", 80, 150.0, 150.0, first), Detections.empty(), gone)])
    # later, the same person under a new id is scored down; the other person still alerts
    assert run(later, [boxes_later[a_later], boxes_later[b_later]], [3, 4], 200.0) == {4}
    scores = {tid: s.scores.pooled[0] for (_, tid), s in core.book.tracks.items() if s.scores is not None}
    assert scores[3] == 0.0 and scores[4] > 0.01
    assert exemplars.suppressed > 0
    # the exemplars survive a restart (they live in the state database)
    assert ExemplarStore(tmp_path / "w.db").count(query.id) == exemplars.count(query.id)
    alerts.close(drain_timeout_s=0)
