"""One person, one id: re-association of a new track with a recently lost person, on drawn people."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from agent.tracking import CameraTracker, build_tracker
from agent.tracking.appearance import colour_descriptor, similarity
from agent.tracking.config import ByteTrackConfig
from agent.types import Detections, Frame, TrackEventKind

FPS = 10.0  # frames/s
T0 = 1_700_000_000.0  # UNIX seconds of frame 0
NEW, UPDATED, LOST, REMOVED = (
    TrackEventKind.NEW,
    TrackEventKind.UPDATED,
    TrackEventKind.LOST,
    TrackEventKind.REMOVED,
)
# BGR colours of a drawn person's upper and lower body.
RED_OVER_BLUE = ((40, 40, 200), (160, 60, 20))
GREEN_OVER_YELLOW = ((50, 170, 40), (30, 200, 220))
PERSON_W, PERSON_H = 50, 120  # pixels


def tracker(**reassociation: object) -> CameraTracker:
    # track_buffer 3 at 10 frames/s: ByteTrack itself holds a lost track for one frame only, so a
    # person who comes back is found again by re-association or not at all.
    config = ByteTrackConfig.model_validate(
        {"type": "bytetrack", "track_buffer": 3, "reassociation": reassociation}
    )
    return build_tracker(config, "cam", frame_rate=FPS)


def scene(people: list[tuple[float, float, tuple[tuple[int, int, int], tuple[int, int, int]]]]) -> np.ndarray:
    """A grey 640x480 frame with a person of (upper, lower) colours at each (x, y) top-left corner."""
    image = np.full((480, 640, 3), 128, np.uint8)
    noise = np.random.default_rng(len(people)).integers(-12, 12, image.shape)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    for x, y, (upper, lower) in people:
        x0, y0 = int(x), int(y)
        image[y0 : y0 + 20, x0 + 15 : x0 + 35] = (120, 150, 190)  # head
        image[y0 + 20 : y0 + 65, x0 : x0 + PERSON_W] = upper
        image[y0 + 65 : y0 + PERSON_H, x0 + 5 : x0 + PERSON_W - 5] = lower
    return image


def step(
    camera: CameraTracker,
    index: int,
    people: list[tuple[float, float, tuple[tuple[int, int, int], tuple[int, int, int]]]],
) -> tuple[list[int], list[tuple[TrackEventKind, int]]]:
    """Show ``people`` (each detected) on frame ``index``; the ids output and the events."""
    frame = Frame("cam", index, index / FPS, T0 + index / FPS, scene(people))
    rows = np.array([(x, y, x + PERSON_W, y + PERSON_H, 0.9) for x, y, _ in people], np.float32).reshape(
        -1, 5
    )
    detections = Detections(xyxy=rows[:, :4], confidence=rows[:, 4], class_id=np.zeros(len(rows), np.int64))
    tracked, events = camera.update(frame, detections)
    assert tracked.tracker_id is not None
    return tracked.tracker_id.tolist(), [(e.kind, e.track_id) for e in events]


def walk(
    camera: CameraTracker,
    frames: range,
    look: tuple[tuple[int, int, int], tuple[int, int, int]],
    x0: float = 100.0,
    speed: float = 6.0,
) -> list[tuple[TrackEventKind, int]]:
    """A person walking right at ``speed`` pixels per frame from ``x0`` over ``frames``; all events."""
    events: list[tuple[TrackEventKind, int]] = []
    for i in frames:
        events += step(camera, i, [(x0 + speed * i, 200.0, look)])[1]
    return events


def gap(camera: CameraTracker, frames: range) -> list[tuple[TrackEventKind, int]]:
    return [event for i in frames for event in step(camera, i, [])[1]]


def test_person_back_after_one_second_nearby_keeps_the_id() -> None:
    camera = tracker()
    assert walk(camera, range(0, 20), RED_OVER_BLUE)[0] == (NEW, 1)
    # Unseen for 1 s (frames 20-29): lost once, never removed while they can come back.
    assert gap(camera, range(20, 30)) == [(LOST, 1)]
    # Back where their walk predicts (6 px/frame: 60 px further than when last seen).
    events = walk(camera, range(30, 40), RED_OVER_BLUE)
    assert {track_id for _, track_id in events} == {1}
    assert (NEW, 1) not in events and events[0] == (UPDATED, 1)
    info = camera.active_tracks()[1]
    assert info.first_seen == T0 and info.frames_seen == 20 + 9  # the tracker confirms on the 2nd frame
    assert camera.reassociations == 1


def test_different_looking_person_at_the_same_place_gets_a_new_id() -> None:
    camera = tracker()
    walk(camera, range(0, 20), RED_OVER_BLUE)
    gap(camera, range(20, 30))
    # Where the first person would be, but not them: held back for decision_window_s (1.5 s) in
    # case a better view matches, then given a new id.
    timeline = {i: walk(camera, range(i, i + 1), GREEN_OVER_YELLOW) for i in range(30, 60)}
    first_output = min(i for i, events in timeline.items() if events)
    assert 45 <= first_output <= 47 and timeline[first_output] == [(NEW, 2)]
    assert all(events == [(UPDATED, 2)] for i, events in timeline.items() if i > first_output)
    assert camera.reassociations == 0
    waiting = camera.active_tracks()[1]
    assert waiting.lost  # the first person can still come back until 6 s after frame 19


def test_person_removed_when_the_window_ends() -> None:
    camera = tracker(max_gap_s=2.05)
    walk(camera, range(0, 10), RED_OVER_BLUE)  # last seen on frame 9, at 0.9 s of media time
    timeline = {i: gap(camera, range(i, i + 1)) for i in range(10, 40)}
    assert timeline[10] == [(LOST, 1)]
    assert [i for i, events in timeline.items() if (REMOVED, 1) in events] == [30]  # 3.0 - 0.9 > 2.05 s
    assert camera.active_tracks() == {}


@pytest.mark.parametrize(
    ("gap_frames", "x_jump", "why"),
    [(70, 0.0, "unseen for 7 s, longer than max_gap_s"), (10, 400.0, "back 400 px from the predicted place")],
)
def test_too_late_or_too_far_gets_a_new_id(gap_frames: int, x_jump: float, why: str) -> None:
    camera = tracker()
    walk(camera, range(0, 20), RED_OVER_BLUE, speed=0.0)
    gap(camera, range(20, 20 + gap_frames))
    events = walk(
        camera, range(20 + gap_frames, 22 + gap_frames), RED_OVER_BLUE, x0=100.0 + x_jump, speed=0.0
    )
    assert events == [(NEW, 2)], why  # on its 2nd frame: nobody within the gates, nothing to wait for
    assert camera.reassociations == 0


def test_a_lost_person_takes_at_most_one_new_track() -> None:
    camera = tracker()
    walk(camera, range(0, 10), RED_OVER_BLUE, speed=0.0)
    gap(camera, range(10, 15))
    ids: set[int] = set()
    for i in range(15, 40):  # two look-alikes come back side by side, both near the lost person
        frame_ids, _ = step(camera, i, [(80.0, 200.0, RED_OVER_BLUE), (140.0, 200.0, RED_OVER_BLUE)])
        assert len(frame_ids) == len(set(frame_ids)), "one id has two boxes"
        ids.update(frame_ids)
    assert ids == {1, 2}


def test_disabled_reassociation_gives_a_new_id_and_removes_at_once() -> None:
    camera = tracker(enabled=False)
    walk(camera, range(0, 20), RED_OVER_BLUE)
    assert gap(camera, range(20, 30)) == [(LOST, 1), (REMOVED, 1)]
    assert (NEW, 2) in walk(camera, range(30, 40), RED_OVER_BLUE)


def test_reset_forgets_lost_people() -> None:
    camera = tracker()
    walk(camera, range(0, 20), RED_OVER_BLUE)
    gap(camera, range(20, 25))
    assert [(e.kind, e.track_id) for e in camera.reset()] == [(REMOVED, 1)]
    events = walk(camera, range(25, 30), RED_OVER_BLUE)
    assert events[0] == (NEW, 2) and camera.reassociations == 0  # a new id: nobody to continue


def test_embedder_hook_replaces_colour() -> None:
    """An attached embedder decides: here one that calls every crop the same, so colour is overruled."""
    calls: list[int] = []

    def same_embedding(crops: Sequence[np.ndarray]) -> np.ndarray:
        calls.append(len(crops))
        return np.tile(np.array([[1.0, 0.0]], np.float32), (len(crops), 1))

    camera = tracker()
    camera.set_appearance_embedder(same_embedding)
    walk(camera, range(0, 20), RED_OVER_BLUE)
    gap(camera, range(20, 30))
    events = walk(camera, range(30, 40), GREEN_OVER_YELLOW)
    assert (NEW, 2) not in events and events[0] == (UPDATED, 1)
    assert calls, "the embedder is asked only when a new track has a candidate, and it was"


def test_colour_descriptor_tells_the_drawn_people_apart() -> None:
    box = np.array([100, 200, 100 + PERSON_W, 200 + PERSON_H], np.float64)
    a = colour_descriptor(scene([(100, 200, RED_OVER_BLUE)]), box)
    a_again = colour_descriptor(scene([(100, 200, RED_OVER_BLUE), (400, 200, GREEN_OVER_YELLOW)]), box)
    b = colour_descriptor(scene([(100, 200, GREEN_OVER_YELLOW)]), box)
    assert a is not None and a_again is not None and b is not None
    assert similarity(a, a_again) > 0.9 > 0.3 > similarity(a, b)
    assert colour_descriptor(scene([]), np.array([0, 0, 3, 3], np.float64)) is None  # too small


def test_pipeline_gives_its_trackers_the_clip_embedder_only_when_asked() -> None:
    from agent.config import AgentConfig
    from agent.pipeline import Pipeline

    def embed(crops: Sequence[np.ndarray]) -> np.ndarray:
        return np.zeros((len(crops), 2), np.float32)

    for appearance, expected in (("clip", embed), ("colour", None)):
        config = AgentConfig.model_validate(
            {
                "cameras": [{"id": "cam", "uri": "test://?pattern=ball"}],
                "tracker": {"type": "bytetrack", "reassociation": {"appearance": appearance}},
            }
        )
        pipeline = Pipeline(config, appearance_embedder=embed)
        assert pipeline._tracker_for("cam").appearance_embedder is expected
