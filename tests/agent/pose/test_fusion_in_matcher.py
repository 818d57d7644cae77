"""With CLIP (a tiny random one), the matcher blends each cue-mapped query's cue into its calibrated
probability; unmapped queries keep CLIP's. The candidate carries the track's cue evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.decision.core import DecisionCore
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.pose.assembly import build_pose_stage
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueFusion
from agent.queries import QueryRegistry
from agent.types import Detections, Frame, FrameResult
from tests.fixtures import posture_set


def test_cues_fused_into_clip_scores(tmp_path: Path, clip_fp32: Path, pose_config: PoseConfig) -> None:
    reason = posture_set.available()
    if reason:
        pytest.skip(reason)
    sample = next(s for s in posture_set.samples() if s.label == "upright")
    registry = QueryRegistry(tmp_path / "w.db")
    still = registry.add("someone standing upright", threshold=0.01)
    coat = registry.add("a man in a black coat", threshold=0.01)
    encoder = ClipEncoder.load(clip_fp32, providers=["cpu"])
    stage = build_pose_stage(pose_config, registry, tmp_path)
    fusion = CueFusion(stage.analyzer, stage.cues, cue_weight=0.5)
    events: list[AlertEvent] = []
    config = MatchingConfig(window_s=1.0, embed_interval_s=0.5)
    plain = Matcher(config, encoder, registry)
    fused = Matcher(config, encoder, registry, cue_fusion=fusion)
    core = DecisionCore(config, AlertsConfig(), fused.query, events.extend, evidence=fused.evidence)
    image = np.ascontiguousarray(sample.image)
    compared = 0
    for step in range(4):
        t = step * 0.5
        tracks = Detections(
            xyxy=np.array([sample.box], np.float32),
            confidence=np.array([0.9], np.float32),
            class_id=np.array([0]),
            tracker_id=np.array([1]),
        )
        one, two = (FrameResult(Frame("cam", step, t, 1000.0 + t, image), tracks, []) for _ in range(2))
        stage.analyzer.process([two])  # the pose stage runs before the matcher
        plain.process([one])
        fused.process([two])
        core.process([two])
        if "samples" in one.extra:
            clip = one.extra["samples"]["1"]
            blended = two.extra["samples"]["1"]
            cue = stage.analyzer.track("cam", 1).cues.values  # type: ignore[union-attr]
            mapping = stage.cues.mappings[still.id]
            assert mapping.cue == "upright"
            weight = 0.5 * mapping.confidence
            expected = (1 - weight) * clip[str(still.id)] + weight * cue["upright"]
            assert blended[str(still.id)] == pytest.approx(expected, abs=2e-6)
            assert blended[str(coat.id)] == pytest.approx(clip[str(coat.id)], abs=1e-9)  # maps to no cue
            compared += 1
    assert compared >= 3, "samples on the embedding cadence were compared"
    opened = [e.candidate for e in events if e.kind is AlertEventKind.OPENED and e.candidate is not None]
    assert opened, "a window selected candidates"
    evidence = next(c.pose for c in opened if c.query_id == still.id)
    assert evidence is not None and evidence["cue"] == "upright" and evidence["keypoints"] is not None
    assert next(c.pose for c in opened if c.query_id == coat.id)["cue"] is None  # type: ignore[index]
    stage.analyzer.close()
    encoder.close()
    registry.close()
