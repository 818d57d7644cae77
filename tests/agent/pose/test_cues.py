"""Behaviour cues from keypoints and motion on media time (hand-made skeletons and boxes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from agent.pose.config import CueParams, PoseConfig
from agent.pose.cues import TrackCues, posture

PARAMS = CueParams(still_long_s=5.0, ground_long_s=4.0)


def standing(x: float, top: float, height: float = 100.0, arms_up: bool = False) -> np.ndarray:
    """17 keypoints of a person standing upright, head at ``top``, ``height`` pixels tall."""
    points = np.zeros((17, 3), np.float32)
    h = height
    rows = {
        0: 0.05,
        5: 0.2,
        6: 0.2,
        7: 0.35,
        8: 0.35,
        9: 0.5,
        10: 0.5,
        11: 0.5,
        12: 0.5,
        13: 0.72,
        14: 0.72,
        15: 0.95,
        16: 0.95,
    }
    for index, fraction in rows.items():
        side = -1 if index in (5, 7, 9, 11, 13, 15) else 1
        points[index] = (x + side * 0.1 * h, top + fraction * h, 0.8)
    if arms_up:
        points[9, 1] = points[10, 1] = top - 0.05 * h
    return points


def lying_points(y: float, left: float, length: float = 100.0) -> np.ndarray:
    """The same skeleton turned 90 degrees: head at ``left``, body along x at height ``y``."""
    upright = standing(0.0, 0.0, length)
    points = upright.copy()
    points[:, 0] = left + upright[:, 1]
    points[:, 1] = y + upright[:, 0]
    return points


def test_posture_of_standing_crouching_and_lying_skeletons() -> None:
    stand = posture(standing(50, 0), (30, 0, 70, 100), PARAMS)
    assert stand.label == "upright" and stand.upright > 0.9
    crouch_points = standing(50, 40, 100)
    crouch_points[13:, 1] = crouch_points[11, 1] + np.array(
        [10, 10, 20, 20]
    )  # knees and ankles near the hips
    crouch = posture(crouch_points, (30, 40, 70, 115), PARAMS)
    assert crouch.label == "crouching", crouch
    lying = posture(lying_points(200, 0), (0, 185, 100, 215), PARAMS)
    assert lying.label == "lying" and lying.lying > 0.9
    assert posture(standing(50, 0, arms_up=True), (30, -5, 70, 100), PARAMS).arms_raised > 0.9
    assert stand.arms_raised < 0.1


def test_torso_unseen_falls_back_to_the_box_aspect() -> None:
    blank = np.zeros((17, 3), np.float32)
    assert posture(blank, (0, 0, 100, 30), PARAMS).label == "lying"
    found = posture(blank, (0, 0, 30, 100), PARAMS)
    assert found.label == "upright" and "torso" in found.evidence


def feed(
    cues: TrackCues,
    times: np.ndarray,
    boxes: Sequence[Sequence[float]],
    points: list[np.ndarray],
) -> dict[str, float]:
    values: dict[str, float] = {}
    for t, coords, kp in zip(times, boxes, points, strict=True):
        box = (float(coords[0]), float(coords[1]), float(coords[2]), float(coords[3]))
        cues.observe(float(t), box)
        cues.observe_pose(float(t), kp, box)
        values = cues.update(float(t))
    return values


def test_running_walking_and_standing_still_by_body_heights_per_second() -> None:
    times = np.arange(0, 8, 0.1)
    for speed, running in ((3.0, True), (0.7, False)):  # body heights per second
        cues = TrackCues(PARAMS)
        boxes = [(30 + speed * 100 * t, 0, 70 + speed * 100 * t, 100) for t in times]
        values = feed(cues, times, boxes, [standing(50 + speed * 100 * t, 0) for t in times])
        assert (values["running"] > 0.9) is running, (speed, values, cues.evidence)
        assert values["still_long"] < 0.1
    cues = TrackCues(PARAMS)
    rng = np.random.default_rng(0)
    jitter = rng.normal(0, 1.5, (len(times), 4))  # detector jitter of a pixel or two
    boxes = [tuple(np.array([30, 0, 70, 100]) + j) for j in jitter]
    values = feed(cues, times, boxes, [standing(50, 0)] * len(times))
    assert values["still_long"] > 0.9 and values["running"] < 0.05, cues.evidence
    assert cues.evidence["still_s"] >= 7.0


def test_fall_is_a_fast_hip_drop_then_lying_and_ground_long_follows() -> None:
    cues = TrackCues(PARAMS)
    times = np.arange(0, 3, 0.1)
    values = feed(cues, times, [(30, 0, 70, 100)] * len(times), [standing(50, 0)] * len(times))
    assert values["fall"] < 0.05 and values["lying"] < 0.1
    # within 0.5 s the person goes down: hips drop ~60 px (0.6 body heights) and the body turns flat
    fall_times = np.arange(3.1, 3.6, 0.1)
    for i, t in enumerate(fall_times, start=1):
        share = i / len(fall_times)
        box = (30 - 40 * share, 60 * share, 70 + 40 * share, 100)
        kp = standing(50, 60 * share) if share < 1 else lying_points(80, 0)
        cues.observe(float(t), box)
        cues.observe_pose(float(t), kp, box)
        values = cues.update(float(t))
    assert values["lying"] > 0.9 and values["fall"] > 0.8, (values, cues.evidence)
    later = np.arange(3.6, 12, 0.1)
    values = feed(cues, later, [(-10, 70, 110, 100)] * len(later), [lying_points(80, 0)] * len(later))
    assert values["fall"] < 0.1, "the fall fades once the drop is older than fall_window_s"
    assert values["ground_long"] > 0.9 and values["still_long"] < 0.1


def test_a_person_who_lies_down_slowly_did_not_fall() -> None:
    cues = TrackCues(PARAMS)
    times = np.arange(0, 10, 0.1)
    boxes, points = [], []
    for t in times:
        share = min(t / 8.0, 1.0)  # eight seconds to get down
        boxes.append((30 - 40 * share, 60 * share, 70 + 40 * share, 100))
        points.append(standing(50, 60 * share) if share < 0.9 else lying_points(80, 0))
    values = feed(cues, times, boxes, points)
    assert values["lying"] > 0.9 and values["fall"] < 0.2, (values, cues.evidence)


def test_thresholds_are_per_camera() -> None:
    config = PoseConfig(cameras={"high-angle": {"running_speed": 0.5}})
    assert config.params_for("high-angle").running_speed == 0.5
    assert config.params_for("other").running_speed == config.cues.running_speed
    with pytest.raises(ValueError, match=r"pose\.cameras\.bad"):
        PoseConfig(cameras={"bad": {"running_sped": 1.0}})


def walk(cues: TrackCues, times: np.ndarray, start_x: float, px_per_s: float) -> dict[str, float]:
    """A person 100 px tall walking right at ``px_per_s`` from ``start_x``, seen at ``times``."""
    lefts = [start_x + px_per_s * (t - times[0]) for t in times]
    boxes = [(left, 0, left + 40, 100) for left in lefts]
    return feed(cues, times, boxes, [standing(b[0] + 20, 0) for b in boxes])


def test_time_unseen_is_not_standing_still() -> None:
    # as on the demo video: a man walks, is lost for 5.6 s and comes back 139 px away
    cues = TrackCues(PARAMS)
    walk(cues, np.arange(0, 3, 0.1), 0, 70)
    values = walk(cues, np.array([8.6]), 0 + 70 * 2.9 + 139, 70)
    assert values["still_long"] < 0.05, cues.evidence
    assert cues.evidence["still_s"] == 0.0 and cues.evidence["speed_body_heights_per_s"] is None
    # standing where they came back: still counts from the return, not from when they were last seen
    back = np.arange(8.7, 11.55, 0.1)
    values = feed(cues, back, [(342, 0, 382, 100)] * len(back), [standing(362, 0)] * len(back))
    assert values["still_long"] < 0.2 and cues.evidence["still_s"] <= 3.0, cues.evidence


def test_a_still_person_unseen_for_a_while_starts_again_but_a_missed_frame_does_not() -> None:
    cues = TrackCues(PARAMS.model_copy(update={"max_gap_s": 0.5}))
    box = (30, 0, 70, 100)
    # seen every frame but one in three (detector misses of 0.2 s): the count goes on
    times = np.array([t for i, t in enumerate(np.arange(0, 8, 0.1)) if i % 3 != 2])
    values = feed(cues, times, [box] * len(times), [standing(50, 0)] * len(times))
    assert values["still_long"] > 0.9 and cues.evidence["still_s"] >= 7.0, cues.evidence
    # unseen for 2 s, back on the same spot: stillness is counted again from the return
    later = np.arange(10, 12, 0.1)
    values = feed(cues, later, [box] * len(later), [standing(50, 0)] * len(later))
    assert cues.evidence["still_s"] <= 1.5 and values["still_long"] < 0.05, cues.evidence


def test_speed_is_unknown_from_a_single_box() -> None:
    cues = TrackCues(PARAMS)
    values = feed(cues, np.array([0.0]), [(30, 0, 70, 100)], [standing(50, 0)])
    assert cues.speed() is None and cues.evidence["speed_body_heights_per_s"] is None
    assert values["running"] < 0.05 and cues.evidence["still_s"] == 0.0


def test_keypoints_of_the_pose_sample_nearest_to_a_time() -> None:
    cues = TrackCues(PARAMS)
    for t in (0.0, 1.0, 2.0):
        cues.observe(t, (30 + 50 * t, 0, 70 + 50 * t, 100))
        cues.observe_pose(t, standing(50 + 50 * t, 0), (30 + 50 * t, 0, 70 + 50 * t, 100))
    found = cues.keypoints_at(1.05, 0.1)
    assert found is not None and found[0] == 1.0 and np.array_equal(found[1], standing(100, 0))
    assert cues.keypoints_at(1.5, 0.15) is None, "no sample within a frame or two: no keypoints"
