"""The pose stage's cadence: new tracks, every interval of media time, sooner on a shape change,
all the tracks of a batch in one engine call."""

from __future__ import annotations

import numpy as np

from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.estimator import PoseEstimator
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind


def result(index: int, boxes: dict[int, tuple[float, float, float, float]]) -> FrameResult:
    t = index / 10.0
    frame = Frame("cam", index, t, 1_800_000_000.0 + t, np.full((240, 320, 3), 90, np.uint8))
    ids = sorted(boxes)
    tracks = Detections(
        xyxy=np.array([boxes[i] for i in ids], np.float32).reshape(-1, 4),
        confidence=np.full(len(ids), 0.9, np.float32),
        class_id=np.zeros(len(ids), np.int64),
        tracker_id=np.array(ids, np.int64),
    )
    events = [TrackEvent(TrackEventKind.UPDATED, "cam", i, index, t, t, 1) for i in ids]
    return FrameResult(frame, tracks, events)


def test_cadence_and_batching(pose_config: PoseConfig) -> None:
    config = pose_config.model_copy(update={"interval_s": 1.0, "min_interval_s": 0.3})
    analyzer = PoseAnalyzer(config, PoseEstimator(config))
    standing = (100.0, 50.0, 130.0, 150.0)
    # frames 0-9 (one second): three tracks, batched by two frames like the pipeline's batches
    for first in range(0, 10, 2):
        analyzer.process([result(i, {1: standing, 2: standing, 3: standing}) for i in (first, first + 1)])
    assert analyzer.stats.crops == 3 and analyzer.stats.calls == 1  # new tracks, once, together
    # at 1.0 s every track is due again: one call, three crops
    analyzer.process([result(10, {1: standing, 2: standing, 3: standing})])
    assert analyzer.stats.crops == 6 and analyzer.stats.calls == 2
    # track 2 lies down at 1.1 s: too soon after its last sample (0.3 s gap); at 1.4 s it is re-sampled
    lying = (80.0, 120.0, 180.0, 150.0)
    analyzer.process([result(11, {1: standing, 2: lying, 3: standing})])
    assert analyzer.stats.crops == 6
    analyzer.process([result(14, {1: standing, 2: lying, 3: standing})])
    assert analyzer.stats.crops == 7
    frame = result(15, {1: standing, 2: lying, 3: standing})
    analyzer.process([frame])
    assert set(frame.extra["cues"]) == {"1", "2", "3"}
    assert frame.extra["cues"]["2"]["lying"] > frame.extra["cues"]["1"]["lying"]
    # a removed track is forgotten
    gone = result(16, {1: standing, 3: standing})
    gone.events.append(TrackEvent(TrackEventKind.REMOVED, "cam", 2, 16, 1.6, 1.6, 16))
    analyzer.process([gone])
    assert analyzer.track("cam", 2) is None
    analyzer.close()
