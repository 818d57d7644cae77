"""ByteTrack and BoT-SORT on people the SSD detector finds in the sample video."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict

import numpy as np
import pytest

from agent.detection import DetectorError, build_detector
from agent.detection.config import SSDDetectorConfig
from agent.tracking import build_tracker
from agent.tracking.config import BotSortConfig, ByteTrackConfig, TrackerConfig
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
    with caplog.at_level(logging.WARNING, logger="agent.tracking.botsort"):
        history = _run(
            BotSortConfig.model_validate({"type": "botsort", "gmc_method": "sparseOptFlow"}), video
        )
    assert not [r for r in caplog.records if "camera-motion" in r.getMessage()], (
        "motion compensation must work"
    )
    _check_lifecycles(history)
    assert len(_long_tracks(history, 50)) >= 3


def _plain(config: dict[str, object]) -> dict[str, object]:
    return {**config, "reassociation": {"enabled": False}}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_same_track_ids_as_ultralytics(
    video: list[tuple[Frame, Detections]], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The NumPy ByteTrack and BoT-SORT give ultralytics' ids frame by frame on real detections.

    ultralytics is not needed to track any more; it is the reference here, skipped without it.
    BoT-SORT runs with sparse optical-flow motion compensation on the frames, as in the demo.
    """
    from types import SimpleNamespace

    from agent.tracking.botsort import BotSortTracker
    from agent.tracking.bytetrack import ByteTracker

    monkeypatch.setenv("YOLO_OFFLINE", "1")  # no DNS probe at import
    monkeypatch.setenv("YOLO_AUTOINSTALL", "0")
    trackers = pytest.importorskip("ultralytics.trackers")

    settings = {
        "track_high_thresh": 0.25,
        "track_low_thresh": 0.1,
        "new_track_thresh": 0.25,
        "match_thresh": 0.8,
    }
    ours: ByteTracker
    if kind == "botsort":
        ours = BotSortTracker(gmc_method="sparseOptFlow", max_frames_lost=10, fuse_score=True, **settings)
        reid_off = {"proximity_thresh": 0.5, "appearance_thresh": 0.8, "with_reid": False, "model": "auto"}
        theirs = trackers.BOTSORT(
            SimpleNamespace(
                track_buffer=10, fuse_score=True, gmc_method="sparseOptFlow", **reid_off, **settings
            )
        )
    else:
        ours = ByteTracker(max_frames_lost=10, fuse_score=True, **settings)
        theirs = trackers.BYTETracker(SimpleNamespace(track_buffer=10, fuse_score=True, **settings))

    class Boxes:  # the NumPy-backed, boolean-indexable input ultralytics trackers take
        def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
            self.xyxy, self.conf, self.cls = xyxy, conf, cls
            self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)

        def __len__(self) -> int:
            return len(self.conf)

        def __getitem__(self, index: np.ndarray) -> Boxes:
            return Boxes(self.xyxy[index], self.conf[index], self.cls[index])

    compared = 0
    for frame, detections in video:
        mine = ours.update(detections.xyxy, detections.confidence, detections.class_id, frame.image)
        rows = np.asarray(
            theirs.update(
                Boxes(detections.xyxy, detections.confidence, detections.class_id.astype(np.float32)),
                frame.image,
            )
        ).reshape(-1, 8)
        reference = sorted(zip(rows[:, 4].astype(int).tolist(), rows[:, 7].astype(int).tolist(), strict=True))
        assert sorted(map(tuple, mine.tolist())) == reference
        compared += len(reference)
    assert compared > 500


@pytest.mark.slow
def test_reassociation_bridges_a_missed_person(video: list[tuple[Frame, Detections]]) -> None:
    """A person whose detections are removed for 1 s keeps their id with re-association, and only with it."""
    config = {"type": "bytetrack", "track_buffer": 3}
    plain = _run(ByteTrackConfig.model_validate(_plain(config)), video)
    # The person followed longest by the plain tracker, and a second in the middle of their track.
    person = max(plain, key=lambda t: max(e.frames_seen for e in plain[t]))
    seen = [e.frame_index for e in plain[person] if e.kind in (TrackEventKind.NEW, TrackEventKind.UPDATED)]
    hidden = set(range(seen[len(seen) // 2], seen[len(seen) // 2] + 10))  # 1 s at 10 frames/s
    boxes = {e.frame_index: e.box for e in plain[person] if e.frame_index in hidden and e.box is not None}
    assert len(boxes) == len(hidden)

    def without_person(video: list[tuple[Frame, Detections]]) -> list[tuple[Frame, Detections]]:
        out = []
        for frame, dets in video:
            if frame.index in hidden:
                keep = np.array([tuple(float(v) for v in box) != boxes[frame.index] for box in dets.xyxy])
                dets = dets[keep]
            out.append((frame, dets))
        return out

    edited = without_person(video)
    for reassociate, expect_same in ((False, False), (True, True)):
        cfg = config if reassociate else _plain(config)
        tracker = build_tracker(ByteTrackConfig.model_validate(cfg), "sample", frame_rate=SAMPLE_FPS)
        ids_before, ids_after = set(), set()
        for frame, dets in edited:
            tracked, _ = tracker.update(frame, dets)
            assert tracked.tracker_id is not None
            for track_id, box in zip(tracked.tracker_id.tolist(), tracked.xyxy, strict=True):
                centre = (box[:2] + box[2:]) / 2
                if frame.index == min(hidden) - 1 and _near(centre, boxes[min(hidden)]):
                    ids_before.add(track_id)
                if frame.index == max(hidden) + 3 and _near(centre, boxes[max(hidden)]):
                    ids_after.add(track_id)
        assert len(ids_before) == 1 and len(ids_after) == 1, (ids_before, ids_after)
        assert (ids_before == ids_after) is expect_same, (reassociate, ids_before, ids_after)


def _near(centre: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    x1, y1, x2, y2 = box
    return bool(np.hypot(centre[0] - (x1 + x2) / 2, centre[1] - (y1 + y2) / 2) < 0.5 * (y2 - y1))
