"""The evidence frame of a cue candidate shows the keypoints taken on that frame, not older ones.

Real frames of the sample video: a man walking right near the bottom edge (frames 577-587, track 29
of the demo run, boxes from its SSD detector and tracker), about 7 px a frame. The pose stage samples
him about once a second; the cue matcher scores him every 0.2 s, so keypoints of the last sample
drawn on the frame last scored were tens of pixels behind him.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.alerts.config import AlertsConfig
from agent.decision.core import DecisionCore
from agent.matching.config import MatchingConfig
from agent.matching.selection import Pick
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

TRACK = 29
WALKING = {
    577: (172.3, 423.7, 228.0, 576.0), 578: (175.0, 426.6, 227.9, 576.0), 579: (177.2, 426.5, 229.1, 576.0),
    580: (179.6, 426.2, 260.3, 576.0), 581: (180.7, 429.1, 258.7, 576.0), 582: (186.8, 424.5, 259.3, 576.0),
    583: (216.8, 419.1, 269.9, 576.0), 584: (218.4, 417.3, 286.8, 576.0), 585: (221.9, 419.4, 303.6, 576.0),
    586: (226.5, 422.9, 296.0, 576.0), 587: (238.3, 426.1, 299.8, 576.0),
}  # fmt: skip


def keypoint_offset_px(keypoints: list[list[float]], box: tuple[float, float, float, float]) -> float:
    """How far (pixels, along x) the seen keypoints' centre is from the box's centre."""
    points = np.asarray(keypoints, np.float32)
    seen = points[points[:, 2] >= 0.25]
    return abs(float(seen[:, 0].mean()) - (box[0] + box[2]) / 2.0)


def test_the_evidence_frame_gets_the_keypoints_taken_on_it_or_none(
    tmp_path: Path, pose_config: PoseConfig, sentence_embedder: SentenceEmbedder
) -> None:
    reason = posture_set.available()
    if reason:
        pytest.skip(reason)
    frames = posture_set.video_frames(set(WALKING))
    registry = QueryRegistry(tmp_path / "queries.db")
    registry.add("a person running")
    config = pose_config.model_copy(update={"interval_s": 1.0})
    pose = PoseAnalyzer(config, PoseEstimator(config))
    cues = QueryCues(registry, CueVocabulary({"minilm": sentence_embedder.embed}))
    matcher = CueMatcher(MatchingConfig(window_s=1.0), config, pose, cues)
    core = DecisionCore(
        MatchingConfig(window_s=1.0),
        AlertsConfig(),
        matcher.query,
        lambda events: None,
        model_versions=matcher.model_versions,
        evidence=matcher.evidence,
    )
    drawn = []
    try:
        for index, box in WALKING.items():
            t = index / 10.0
            frame = Frame("cam", index, t, 1_800_000_000.0 + t, frames[index])
            tracks = Detections(
                xyxy=np.array([box], np.float32),
                confidence=np.array([0.9], np.float32),
                class_id=np.array([0]),
                tracker_id=np.array([TRACK]),
            )
            kind = TrackEventKind.NEW if index == min(WALKING) else TrackEventKind.UPDATED
            event = TrackEvent(kind, "cam", TRACK, index, frame.wall_time, frame.wall_time, 1, box)
            results = [FrameResult(frame, tracks, [event])]
            pose.process(results)
            matcher.process(results)
            core.process(results)
            candidate = core.candidate("cam", Pick(TRACK, 0, 0.5, True), t)
            assert candidate.pose is not None and candidate.pose["keypoints"] is not None, t
            assert candidate.box == pytest.approx(WALKING[candidate.frame_index])  # the frame's own box
            width = candidate.box[2] - candidate.box[0]
            offset = keypoint_offset_px(candidate.pose["keypoints"], candidate.box)
            drawn.append(
                (candidate.frame_index / 10.0, round(offset / width, 2), candidate.pose.get("keypoints_t"))
            )
    finally:
        pose.close()
        registry.close()
    # (evidence frame's media time, keypoints' centre off the box's centre in box widths, sample time):
    # keypoints of the sample before, drawn on the frames of 58.5 and 58.7 s, were 0.5 and 0.75 widths off
    assert all(off < 0.35 for _, off, _ in drawn), drawn
    assert all(sample == t for t, _, sample in drawn), drawn
    assert len({t for t, _, _ in drawn}) >= 2, drawn  # the evidence frame moved on with the samples
    # a frame with no pose sample on it or next to it gets no keypoints at all
    track = pose.track("cam", TRACK)
    assert track is not None
    taken = [t for t, _ in track.cues.pose_samples]
    between = next(index / 10.0 for index in WALKING if min(abs(index / 10.0 - t) for t in taken) > 0.15)
    evidence = pose.evidence("cam", TRACK, between)
    assert evidence is not None and evidence["keypoints"] is None, (between, taken)
