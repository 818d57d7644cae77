"""ByteTrack and BoT-SORT on people the SSD detector finds in the sample video."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict

import numpy as np
import pytest

from agent.config import BotSortConfig, ByteTrackConfig, SSDDetectorConfig, TrackerConfig
from agent.detection import DetectorError, build_detector
from agent.tracking import build_tracker
from agent.types import Detections, Frame, TrackEvent, TrackEventKind

T0 = 1_700_000_000.0  # UNIX seconds of frame 0
SAMPLE_FPS = 10.0  # the sample video's native frame rate, frames/s


@pytest.fixture(scope="module")
def video(sample_frames: list[np.ndarray]) -> list[tuple[Frame, Detections]]:
    """The first 150 frames at the native rate with their SSD person detections."""
    try:
        detector = build_detector(SSDDetectorConfig.model_validate({"type": "ssd-mobilenet"}))
    except DetectorError as exc:
        pytest.skip(str(exc))
    with detector:
        detections = detector.detect(sample_frames)
    frames = [
        Frame(camera_id="sample", index=i, pts_s=i / SAMPLE_FPS, wall_time=T0 + i / SAMPLE_FPS, image=image)
        for i, image in enumerate(sample_frames)
    ]
    return list(zip(frames, detections, strict=True))


def _run(config: TrackerConfig, video: list[tuple[Frame, Detections]]) -> dict[int, list[TrackEvent]]:
    tracker = build_tracker(config, "sample", frame_rate=SAMPLE_FPS)
    history: dict[int, list[TrackEvent]] = defaultdict(list)
    for frame, detections in video:
        tracked, events = tracker.update(frame, detections)
        assert tracked.tracker_id is not None
        assert len(set(tracked.tracker_id.tolist())) == len(tracked), "one box per track per frame"
        updated = {e.track_id for e in events if e.kind in (TrackEventKind.NEW, TrackEventKind.UPDATED)}
        assert updated == set(tracked.tracker_id.tolist())
        for event in events:
            assert event.camera_id == "sample" and event.frame_index == frame.index
            history[event.track_id].append(event)
    return history


def _check_lifecycles(history: dict[int, list[TrackEvent]]) -> None:
    """Every track: NEW, then UPDATED/LOST with LOST never twice in a row, REMOVED only last."""
    for track_id, events in history.items():
        kinds = [event.kind for event in events]
        assert kinds[0] is TrackEventKind.NEW, (track_id, kinds)
        assert TrackEventKind.NEW not in kinds[1:]
        assert TrackEventKind.REMOVED not in kinds[:-1]
        for before, after in itertools.pairwise(kinds):
            assert not (before is after is TrackEventKind.LOST), (track_id, kinds)
        seen = [event.frames_seen for event in events]
        assert seen == sorted(seen) and seen[0] == 1
        assert all(event.first_seen == events[0].first_seen for event in events)
        assert all(event.last_seen >= event.first_seen for event in events)


def _long_tracks(history: dict[int, list[TrackEvent]], frames: int) -> list[int]:
    return [track_id for track_id, events in history.items() if max(e.frames_seen for e in events) >= frames]


@pytest.mark.slow
def test_bytetrack_follows_people_through_the_sample_video(video: list[tuple[Frame, Detections]]) -> None:
    history = _run(ByteTrackConfig.model_validate({"type": "bytetrack"}), video)
    _check_lifecycles(history)
    long_tracks = _long_tracks(history, 50)
    assert len(long_tracks) >= 3, f"tracks followed for 50+ frames: {long_tracks}"
    # Tracks that left the view were removed, with their last box inside the frame.
    removed = [events[-1] for events in history.values() if events[-1].kind is TrackEventKind.REMOVED]
    assert removed
    for event in removed:
        assert event.box is not None and 0 <= event.box[0] < event.box[2] <= 768


@pytest.mark.slow
def test_botsort_runs_on_real_frames(
    video: list[tuple[Frame, Detections]], caplog: pytest.LogCaptureFixture
) -> None:
    ultralytics_logger = logging.getLogger("ultralytics")  # it does not propagate to the root logger
    ultralytics_logger.addHandler(caplog.handler)
    try:
        history = _run(
            BotSortConfig.model_validate({"type": "botsort", "gmc_method": "sparseOptFlow"}), video
        )
    finally:
        ultralytics_logger.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "GMC failed" in r.getMessage()], "motion compensation must work"
    _check_lifecycles(history)
    assert len(_long_tracks(history, 50)) >= 3
