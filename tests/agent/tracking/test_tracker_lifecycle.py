"""Track lifecycle events, ids and buffers, on hand-made boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError
from agent.tracking import CameraTracker, build_tracker, load_tracker_config
from agent.tracking.backends import track_buffer_frames
from agent.tracking.config import BotSortConfig, ByteTrackConfig
from agent.types import Detections, Frame, TrackEvent, TrackEventKind

REPO = Path(__file__).resolve().parents[3]
IMAGE = np.zeros((480, 640, 3), np.uint8)
T0 = 1_700_000_000.0  # UNIX seconds of frame 0
FPS = 30.0  # frames/s: track_buffer is counted at 30 frames/s, so here it is not rescaled

NEW, UPDATED, LOST, REMOVED = (
    TrackEventKind.NEW,
    TrackEventKind.UPDATED,
    TrackEventKind.LOST,
    TrackEventKind.REMOVED,
)


def frame(index: int, camera_id: str = "cam") -> Frame:
    return Frame(camera_id=camera_id, index=index, pts_s=index / FPS, wall_time=T0 + index / FPS, image=IMAGE)


def boxes(*rows: tuple[float, float, float, float, float]) -> Detections:
    """Person detections from (x1, y1, x2, y2, confidence) rows."""
    array = np.array(rows, dtype=np.float32).reshape(-1, 5)
    return Detections(xyxy=array[:, :4], confidence=array[:, 4], class_id=np.zeros(len(array), np.int64))


def person(step: int, x: float = 100.0, score: float = 0.9) -> tuple[float, float, float, float, float]:
    """A 50x120-pixel person walking right 2 pixels per frame."""
    return (x + 2 * step, 200.0, x + 50 + 2 * step, 320.0, score)


# Configs go through model_validate: mypy without the pydantic plugin takes Field(default, ...) as required.
# These tests are about the tracker itself, so re-association (tests/agent/tracking/test_reassociation.py)
# is off: with it, a lost person is held (LOST, not REMOVED) until its max_gap_s has passed.
PLAIN = {"reassociation": {"enabled": False}}


def bytetrack(buffer: int = 5, camera_id: str = "cam") -> CameraTracker:
    return build_tracker(
        ByteTrackConfig.model_validate({"type": "bytetrack", "track_buffer": buffer, **PLAIN}),
        camera_id,
        frame_rate=FPS,
    )


def kinds(events: list[TrackEvent]) -> list[tuple[TrackEventKind, int]]:
    return [(event.kind, event.track_id) for event in events]


def test_appear_continue_disappear_lifecycle() -> None:
    tracker = bytetrack(buffer=5)
    # Frames 0-4: one person in view. On a tracker's first frame a track is confirmed at once.
    for i in range(5):
        tracked, events = tracker.update(frame(i), boxes(person(i, score=0.8 + 0.01 * i)))
        assert tracked.tracker_id is not None and tracked.tracker_id.tolist() == [1]
        assert kinds(events) == [(NEW if i == 0 else UPDATED, 1)]
        assert tracked.confidence[0] == pytest.approx(0.8 + 0.01 * i)  # the matched detection's own score
        np.testing.assert_allclose(tracked.xyxy[0], person(i)[:4])  # its own box, not the Kalman estimate
    last = events[0]
    assert (last.first_seen, last.last_seen, last.frames_seen) == (T0, T0 + 4 / FPS, 5)
    assert last.box == pytest.approx(person(4)[:4]) and last.score == pytest.approx(0.84)

    # Frame 5: gone -> LOST once, still an active track.
    tracked, events = tracker.update(frame(5), Detections.empty())
    assert len(tracked) == 0 and tracked.tracker_id is not None
    assert kinds(events) == [(LOST, 1)]
    assert events[0].last_seen == T0 + 4 / FPS and events[0].frames_seen == 5 and events[0].frame_index == 5
    assert tracker.active_tracks()[1].lost

    # Held for track_buffer=5 frames after its last match (frame 4), removed on the 6th.
    for i in range(6, 10):
        assert tracker.update(frame(i), Detections.empty())[1] == []
    _, events = tracker.update(frame(10), Detections.empty())
    assert kinds(events) == [(REMOVED, 1)]
    assert events[0].frames_seen == 5 and events[0].last_seen == T0 + 4 / FPS
    assert tracker.active_tracks() == {}
    assert tracker.update(frame(11), Detections.empty())[1] == []


def test_new_track_is_confirmed_on_its_second_frame() -> None:
    tracker = bytetrack()
    tracker.update(frame(0), boxes(person(0)))
    tracked, events = tracker.update(frame(1), boxes(person(1), person(0, x=400)))
    assert kinds(events) == [(UPDATED, 1)]  # the newcomer is not output yet: one frame could be a glitch
    assert tracked.tracker_id is not None and tracked.tracker_id.tolist() == [1]
    tracked, events = tracker.update(frame(2), boxes(person(2), person(1, x=400)))
    assert sorted(kinds(events)) == [(NEW, 2), (UPDATED, 1)]
    assert tracker.active_tracks()[2].first_seen == T0 + 2 / FPS


def test_lost_track_found_again_keeps_its_id() -> None:
    tracker = bytetrack(buffer=10)
    for i in range(5):
        tracker.update(frame(i), boxes(person(i)))
    for i in range(5, 8):
        tracker.update(frame(i), Detections.empty())
    tracked, events = tracker.update(frame(8), boxes(person(8)))
    assert kinds(events) == [(UPDATED, 1)]
    assert tracked.tracker_id is not None and tracked.tracker_id.tolist() == [1]
    info = tracker.active_tracks()[1]
    assert not info.lost and info.frames_seen == 6 and info.last_frame_index == 8


def test_low_score_detections_keep_a_track_alive_but_do_not_start_one() -> None:
    tracker = bytetrack()
    for i in range(3):
        tracker.update(frame(i), boxes(person(i)))
    # 0.15 is between track_low_thresh (0.1) and track_high_thresh (0.25): ByteTrack's second round.
    tracked, events = tracker.update(frame(3), boxes(person(3, score=0.15), person(0, x=400, score=0.15)))
    assert kinds(events) == [(UPDATED, 1)]
    assert tracked.confidence.tolist() == [pytest.approx(0.15)]
    for i in range(4, 7):
        _, events = tracker.update(frame(i), boxes(person(i), person(i, x=400, score=0.15)))
        assert kinds(events) == [(UPDATED, 1)]


def test_detection_data_and_class_travel_with_the_track() -> None:
    tracker = bytetrack()
    dets = boxes(person(0), person(0, x=400))
    dets.class_id[:] = [0, 2]
    dets.data["embedding"] = np.array([[1.0, 0.0], [0.0, 1.0]])
    tracked, _ = tracker.update(frame(0), dets)
    assert tracked.tracker_id is not None
    by_id = {int(t): i for i, t in enumerate(tracked.tracker_id)}
    assert set(by_id) == {1, 2}
    for track_id, x in ((1, 100.0), (2, 400.0)):
        row = tracked[by_id[track_id]]
        assert row.xyxy[0, 0] == x
        source = 0 if x == 100.0 else 1
        assert row.class_id[0] == dets.class_id[source]
        np.testing.assert_array_equal(row.data["embedding"][0], dets.data["embedding"][source])


def test_trackers_count_ids_independently_and_reset_never_reuses_an_id() -> None:
    first, second = bytetrack(camera_id="a"), bytetrack(camera_id="b")
    for i in range(3):
        tracked_a, events_a = first.update(
            frame(i, "a"), boxes(person(i), person(i, x=300), person(i, x=500))
        )
    assert tracked_a.tracker_id is not None and sorted(tracked_a.tracker_id.tolist()) == [1, 2, 3]
    assert {event.camera_id for event in events_a} == {"a"}
    _, events_b = second.update(frame(0, "b"), boxes(person(0)))
    assert kinds(events_b) == [(NEW, 1)] and events_b[0].camera_id == "b"

    removed = first.reset()
    assert sorted(kinds(removed)) == [(REMOVED, 1), (REMOVED, 2), (REMOVED, 3)]
    assert first.active_tracks() == {}
    _, events = first.update(frame(3, "a"), boxes(person(3, x=200)))
    assert kinds(events) == [(NEW, 4)]  # a new person never takes a dropped person's id
    # The other camera's tracker is untouched.
    _, events_b = second.update(frame(1, "b"), boxes(person(1)))
    assert kinds(events_b) == [(UPDATED, 1)]


def test_botsort_lifecycle_on_hand_made_boxes() -> None:
    config = BotSortConfig.model_validate(
        {"type": "botsort", "track_buffer": 3, "gmc_method": "none", **PLAIN}
    )
    tracker = build_tracker(config, "cam", frame_rate=FPS)
    observed = []
    for i in range(8):
        dets = boxes(person(i)) if i < 3 else Detections.empty()
        observed.extend(kinds(tracker.update(frame(i), dets)[1]))
    assert observed == [(NEW, 1), (UPDATED, 1), (UPDATED, 1), (LOST, 1), (REMOVED, 1)]


def test_track_buffer_is_counted_at_30_frames_per_second() -> None:
    assert track_buffer_frames(30, 30.0) == 30
    assert track_buffer_frames(30, 10.0) == 10
    assert track_buffer_frames(30, 60.0) == 60
    assert track_buffer_frames(30, 0.5) == 1
    with pytest.raises(ValueError):
        track_buffer_frames(30, 0.0)
    # At 10 frames/s a 30-frame buffer holds a lost track for 10 analysed frames (1 s).
    tracker = build_tracker(
        ByteTrackConfig.model_validate({"type": "bytetrack", "track_buffer": 30, **PLAIN}),
        "cam",
        frame_rate=10.0,
    )
    tracker.update(frame(0), boxes(person(0)))
    removed_at = None
    for i in range(1, 20):
        if any(event.kind is REMOVED for event in tracker.update(frame(i), Detections.empty())[1]):
            removed_at = i
            break
    assert removed_at == 11


@pytest.mark.parametrize(("name", "expected"), [("bytetrack", ByteTrackConfig), ("botsort", BotSortConfig)])
def test_tracker_settings_files_hold_the_defaults(
    name: str, expected: type[ByteTrackConfig] | type[BotSortConfig]
) -> None:
    config = load_tracker_config(REPO / "configs" / "trackers" / f"{name}.yaml")
    assert config == expected.model_validate({"type": name})


def test_bad_tracker_settings_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "tracker.yaml"
    path.write_text("type: bytetrack\ntrack_bufer: 30\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="track_bufer"):
        load_tracker_config(path)


def test_retired_reid_gates_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "botsort.yaml"
    path.write_text("type: botsort\nproximity_thresh: 0.5\nappearance_thresh: 0.8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"appearance_thresh, proximity_thresh: .*tracker.reassociation"):
        load_tracker_config(path)
