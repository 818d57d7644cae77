"""A fall made from a real person raises an alert from pose cues alone, through the real decision chain.

The person is a crop of the sample video; the fall is synthetic: the crop turns 90 degrees about
the feet over half a second while its box drops, as a camera would see someone fall. Frames go
through MoveNet (the exported ONNX), the cues, the cue matcher (the CLIP matcher's pooling,
hysteresis and window selection), the candidate queue and the alert manager (SQLite outbox,
evidence on disk). No CLIP model is involved.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.alerts import AlertManager
from agent.alerts.config import AlertsConfig
from agent.decision.core import DecisionCore
from agent.matching.config import MatchingConfig
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueMatcher
from agent.pose.estimator import PoseEstimator
from agent.pose.querycues import QueryCues
from agent.pose.sentence import SentenceEmbedder
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind
from tests.fixtures import posture_set

FPS = 10.0
FALL_START_S = 3.0
FALL_FRAMES = 5  # half a second
PERSON = (600, 449.6, 302.9, 488.0, 419.5)  # frame index and box of a walking person, 38 x 117 px
CANVAS = (576, 768)
WALL_START = 1_800_000_000.0  # UNIX seconds of the first frame (payload times are wall times)


def person_patch() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The person with some surroundings, and their box in the patch."""
    index, x1, y1, x2, y2 = PERSON
    frame = posture_set.video_frames({int(index)})[int(index)]
    pad = 50
    left, top = int(x1) - pad, int(y1) - pad
    patch = frame[top : int(y2) + pad, left : int(x2) + pad].copy()
    return patch, (x1 - left, y1 - top, x2 - left, y2 - top)


def scene(
    patch: np.ndarray, box: tuple[float, float, float, float], angle_deg: float
) -> tuple[np.ndarray, tuple]:
    """A frame with the patch turned ``angle_deg`` about the person's feet, and the person's box."""
    canvas = np.full((*CANVAS, 3), 120, np.uint8)
    origin = (300, 250)  # where the patch sits in the frame
    feet = ((box[0] + box[2]) / 2.0, box[3])
    matrix = np.asarray(cv2.getRotationMatrix2D(feet, -angle_deg, 1.0), np.float64)
    size = max(patch.shape[:2]) * 2
    shift = np.array([[1, 0, size / 4], [0, 1, size / 4]], np.float64)
    matrix[:, 2] += shift[:, 2]
    turned = cv2.warpAffine(patch, matrix, (size, size), borderValue=(120, 120, 120))
    top, left = origin[1] - size // 4, origin[0] - size // 4
    canvas[top : top + size, left : left + size] = turned[: CANVAS[0] - top, : CANVAS[1] - left]
    corners = np.array([[box[0], box[1], 1], [box[2], box[1], 1], [box[0], box[3], 1], [box[2], box[3], 1]])
    moved = corners @ matrix.T + np.array([left, top])
    x1, y1 = moved.min(axis=0)
    x2, y2 = moved.max(axis=0)
    return canvas, (float(x1), float(y1), float(x2), float(y2))


def sequence(falls: bool, seconds: float = 8.0) -> list[tuple[float, np.ndarray, tuple]]:
    """(media time, frame, box) at 10 frames/s: standing, then (if ``falls``) a fall and lying."""
    patch, box = person_patch()
    frames = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        step = (t - FALL_START_S) * FPS
        angle = 0.0 if not falls or step < 0 else min(90.0, 90.0 * (step + 1) / FALL_FRAMES)
        image, person = scene(patch, box, angle)
        frames.append((t, image, person))
    return frames


@pytest.fixture
def chain(tmp_path: Path, pose_config: PoseConfig, sentence_embedder: SentenceEmbedder):
    registry = QueryRegistry(tmp_path / "queries.db")
    registry.add("a person falling down", severity="critical")
    alerts = AlertManager(
        AlertsConfig(database=tmp_path / "alerts.db", evidence_dir=tmp_path / "evidence"), "test"
    )
    alerts.start()
    config = pose_config.model_copy(update={"interval_s": 1.0})
    pose = PoseAnalyzer(config, PoseEstimator(config))
    cues = QueryCues(registry, CueVocabulary({"minilm": sentence_embedder.embed}))
    matcher = CueMatcher(MatchingConfig(window_s=1.0), config, pose, cues)
    core = DecisionCore(
        MatchingConfig(window_s=1.0),
        alerts.config,
        matcher.query,
        alerts.post,
        model_versions=matcher.model_versions,
        evidence=matcher.evidence,
    )
    yield pose, matcher, alerts, tmp_path / "evidence", core
    alerts.close(drain_timeout_s=1.0)
    registry.close()


def person_result(index: int, t: float, image: np.ndarray, box: tuple) -> FrameResult:
    """Frame ``index`` (media time ``t``) of camera "cam" with one person, track 7, at ``box``."""
    frame = Frame("cam", index, t, WALL_START + t, image)
    tracks = Detections(
        xyxy=np.array([box], np.float32),
        confidence=np.array([0.9], np.float32),
        class_id=np.array([0]),
        tracker_id=np.array([7]),
    )
    kind = TrackEventKind.NEW if index == 0 else TrackEventKind.UPDATED
    event = TrackEvent(kind, "cam", 7, index, frame.wall_time, frame.wall_time, index + 1, box)
    return FrameResult(frame, tracks, [event])


def run(chain, frames) -> list[dict]:
    pose, matcher, alerts, _, core = chain
    for index, (t, image, box) in enumerate(frames):
        results = [person_result(index, t, image, box)]
        pose.process(results)
        matcher.process(results)
        core.process(results)
    assert alerts.wait_emitted(15.0), "the emission thread took every event the core decided"
    return alerts.recent(limit=10)


def test_a_fall_raises_an_alert_within_two_seconds_with_keypoints_in_the_evidence(chain) -> None:
    reason = posture_set.available()
    if reason:
        pytest.skip(reason)
    raised = run(chain, sequence(falls=True))
    assert raised, "no alert for the fall"
    (alert,) = raised
    assert alert["query"] == "a person falling down" and alert["track_id"] == 7
    opened_at = float(alert["started_at"]) - WALL_START  # seconds into the sequence
    record = json.loads((chain[3] / alert["evidence"]["json"]).read_text())
    assert record["pose"]["cue"] == "fall"
    assert record["pose"]["keypoints"] is not None and len(record["pose"]["keypoints"]) == 17
    history = record["pose"]["history"]
    assert any(h["fall"] > 0.5 for h in history)
    assert record["pose_at_open"]["values"]["fall"] > 0.5  # what the opening candidate saw
    assert record["pose_at_open"]["posture"] == "lying"
    assert FALL_START_S < opened_at <= FALL_START_S + 2.0, (opened_at, record["score_history"])
    assert (chain[3] / alert["evidence"]["frame"]).is_file()


def test_the_same_person_upright_raises_no_alert(chain) -> None:
    reason = posture_set.available()
    if reason:
        pytest.skip(reason)
    assert run(chain, sequence(falls=False)) == []
    pose, core = chain[0], chain[4]
    assert core.stats().windows >= 7, "the person was scored window after window"
    track = pose.track("cam", 7)
    assert track is not None and track.cues.values["upright"] > 0.5 and track.cues.values["fall"] < 0.1
