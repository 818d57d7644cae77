"""Behaviour cues of one person from keypoints and the track's motion on media time.

Every cue is a value in [0, 1], a logistic of one measurement around a configurable threshold
(:class:`~agent.pose.config.CueParams`), with the measurement as evidence:

- ``upright`` / ``crouching`` / ``lying`` (sum to 1): the torso's angle from vertical (shoulders to
  hips) and, for crouching, the hip-to-ankle height against the torso length; the box's aspect ratio
  stands in when the torso's keypoints are not seen.
- ``fall``: the fastest drop of the hips (body heights per second) within ``fall_window_s``,
  followed by lying now.
- ``running``: the speed of the box's foot point in body heights per second over ``speed_window_s``.
- ``still_long``: seconds without moving faster than ``still_speed``, while not lying, counted only
  while the person is seen: a gap over ``max_gap_s`` without a box restarts the count, and so does
  any frame where the speed cannot be measured yet (fewer than two boxes in the window).
- ``arms_raised``: a wrist above its shoulder, in torso lengths.
- ``ground_long``: seconds lying without a break.

Time is the frame's media time (pts), so a recorded video gives the same cues as the live camera.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from agent.pose.config import CueParams
from agent.pose.vocabulary import CUES

L_SHOULDER, R_SHOULDER, L_WRIST, R_WRIST = 5, 6, 9, 10
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 11, 12, 13, 14, 15, 16
BODY_WINDOW_S = 3.0
"""Body height (the pixel unit of speeds) is the largest box side over this much recent time."""
MOTION_KEEP_S = 12.0
HISTORY_GAP_S = 0.5
"""The evidence history keeps at most one snapshot per this many seconds of media time."""
POSE_SAMPLES_KEPT = 8
"""Recent pose samples kept per track, so an evidence frame gets the keypoints taken on it."""


def logistic(value: float, centre: float, scale: float) -> float:
    """1 / (1 + exp(-(value - centre) / scale)), safe for any value."""
    z = (value - centre) / max(scale, 1e-9)
    return float(1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0))))


def _mid(points: np.ndarray, a: int, b: int, threshold: float) -> tuple[np.ndarray, float] | None:
    """The midpoint of two keypoints (or the one that is seen) and the lower of their scores."""
    seen = [points[i] for i in (a, b) if points[i, 2] >= threshold]
    if not seen:
        return None
    xy = np.mean([p[:2] for p in seen], axis=0)
    return xy, float(min(p[2] for p in seen))


@dataclass(frozen=True)
class Posture:
    """Upright / crouching / lying probabilities of one pose sample, with what they were read from."""

    upright: float
    crouching: float
    lying: float
    arms_raised: float
    evidence: dict[str, Any]
    hip_y: float | None = None

    @property
    def label(self) -> str:
        values = {"upright": self.upright, "crouching": self.crouching, "lying": self.lying}
        return max(values, key=values.__getitem__)


def posture(
    points: np.ndarray,
    box: tuple[float, float, float, float],
    params: CueParams,
    frame_height: int | None = None,
) -> Posture:
    """Posture from one person's 17 keypoints (x, y in pixels, score) and box (x1, y1, x2, y2).

    A box that reaches the bottom of the frame (``frame_height`` pixels) has its legs cut off, so
    they are not read: a person half out of the picture is not crouching.
    """
    threshold = params.keypoint_score
    width, height = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    aspect = width / height
    lying_box = logistic(aspect, params.lying_aspect, 0.15)
    evidence: dict[str, Any] = {"box_aspect": round(aspect, 3)}
    shoulders = _mid(points, L_SHOULDER, R_SHOULDER, threshold)
    hips = _mid(points, L_HIP, R_HIP, threshold)
    crouch = 0.0
    arms = 0.0
    hip_y = None
    if shoulders is not None and hips is not None:
        torso = shoulders[0] - hips[0]
        length = float(np.hypot(*torso))
        # from the upward vertical: 0 upright, 90 horizontal, 180 upside down (counted as lying too)
        angle = math.degrees(math.atan2(abs(float(torso[0])), -float(torso[1])))
        lying_torso = logistic(angle, params.lying_angle_deg, params.angle_scale_deg)
        lying = 0.75 * lying_torso + 0.25 * lying_box
        evidence.update(torso_angle_deg=round(angle, 1), torso_px=round(length, 1))
        hip_y = float(hips[0][1])
        legs = _mid(points, L_ANKLE, R_ANKLE, threshold)
        scale = 1.0
        if legs is None:
            legs, scale = _mid(points, L_KNEE, R_KNEE, threshold), 2.0  # hip-knee is about half of hip-ankle
        cut = frame_height is not None and box[3] >= frame_height - 2
        if cut:
            evidence["legs"] = "cut by the frame's bottom edge"
        elif legs is not None and length > 1.0:
            ratio = scale * float(legs[0][1] - hips[0][1]) / length
            crouch = logistic(params.crouch_ratio - ratio, 0.0, 0.15)
            evidence["leg_ratio"] = round(ratio, 3)
        if not cut and "leg_ratio" not in evidence:
            evidence["legs"] = "not seen"
        raised = []
        for wrist, shoulder in ((L_WRIST, L_SHOULDER), (R_WRIST, R_SHOULDER)):
            wrist_seen = points[wrist, 2] >= max(threshold, params.wrist_score)
            if wrist_seen and points[shoulder, 2] >= threshold and length > 1.0:
                raised.append(float(points[shoulder, 1] - points[wrist, 1]) / length)
        if raised:
            evidence["wrist_above_shoulder"] = round(max(raised), 3)
            arms = logistic(max(raised), params.arms_margin, 0.1)
    else:
        lying = lying_box
        evidence["torso"] = "not seen: posture from the box aspect"
    evidence["keypoints_seen"] = int((points[:, 2] >= threshold).sum())
    upright = (1.0 - lying) * (1.0 - crouch)
    crouching = (1.0 - lying) * crouch
    return Posture(upright, crouching, lying, arms * (1.0 - lying), evidence, hip_y)


@dataclass
class TrackCues:
    """The cue state of one track: motion on every frame, posture on each pose sample.

    Args:
        params: the camera's cue parameters.
        history: cue snapshots kept for the evidence record.
    """

    params: CueParams
    history: int = 64
    motion: deque[tuple[float, float, float, float]] = field(default_factory=deque)  # t, foot x, foot y, side
    centres: deque[tuple[float, float]] = field(default_factory=deque)  # t, hip (or box centre) y
    hips: deque[tuple[float, float]] = field(default_factory=deque)  # t, hip y from keypoints
    posture: Posture | None = None
    pose_samples: deque[tuple[float, np.ndarray]] = field(default_factory=deque)  # t, keypoints
    still_since: float | None = None
    lying_since: float | None = None
    last_time: float | None = None
    values: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    snapshots: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.snapshots = deque(maxlen=self.history)
        self.pose_samples = deque(maxlen=POSE_SAMPLES_KEPT)

    def body_px(self) -> float:
        """Body height in pixels: the largest box side seen over the last few seconds."""
        return max((side for _, _, _, side in self.motion), default=1.0)

    def observe(self, time_s: float, box: tuple[float, float, float, float]) -> None:
        """Add one frame's box at media time ``time_s`` (seconds)."""
        x1, y1, x2, y2 = box
        if self.last_time is not None and time_s - self.last_time > self.params.max_gap_s:
            # unseen for a while: what the person did meanwhile is unknown, so stillness starts
            # again, and the speed is not measured across the gap (a return far away is no 0 speed)
            self.motion.clear()
            self.still_since = None
        self.motion.append((time_s, (x1 + x2) / 2.0, y2, max(x2 - x1, y2 - y1)))
        self.centres.append((time_s, (y1 + y2) / 2.0))
        while self.motion and self.motion[0][0] < time_s - BODY_WINDOW_S:
            self.motion.popleft()
        while self.centres and self.centres[0][0] < time_s - MOTION_KEEP_S:
            self.centres.popleft()
        while self.hips and self.hips[0][0] < time_s - MOTION_KEEP_S:
            self.hips.popleft()
        self.last_time = time_s
        speed = self.speed()
        if self.still_since is None or speed is None or speed > self.params.still_speed:
            self.still_since = time_s  # still only once a measured speed says so

    def observe_pose(
        self,
        time_s: float,
        points: np.ndarray,
        box: tuple[float, float, float, float],
        frame_height: int | None = None,
    ) -> None:
        """Add one pose sample (17 keypoints in pixels with scores) taken at ``time_s``."""
        self.posture = posture(points, box, self.params, frame_height)
        self.pose_samples.append((time_s, points))
        if self.posture.hip_y is not None:
            self.hips.append((time_s, self.posture.hip_y))

    def frame_interval_s(self, default: float = 0.1) -> float:
        """The shortest media time between two consecutive boxes of the track (its camera's frame
        interval, seconds), or ``default`` before two boxes were seen."""
        times = [sample[0] for sample in self.motion]
        steps = [b - a for a, b in pairwise(times) if b > a]
        return min(steps, default=default)

    def keypoints_at(self, time_s: float, tolerance_s: float) -> tuple[float, np.ndarray] | None:
        """The pose sample (media time, keypoints) nearest to ``time_s``, or None when none was taken
        within ``tolerance_s`` seconds of it (keypoints from further away are off a moving person)."""
        best = min(self.pose_samples, key=lambda sample: abs(sample[0] - time_s), default=None)
        if best is None or abs(best[0] - time_s) > tolerance_s:
            return None
        return best

    def speed(self) -> float | None:
        """Foot-point speed in body heights per second over the last ``speed_window_s`` of media time;
        None when it cannot be measured (under half a window of boxes since the track was seen again)."""
        if len(self.motion) < 2:
            return None
        now_t, now_x, now_y, _ = self.motion[-1]
        start = self.motion[0]
        for sample in self.motion:
            if sample[0] >= now_t - self.params.speed_window_s:
                start = sample
                break
        dt = now_t - start[0]
        if dt < 0.5 * self.params.speed_window_s:
            return None
        return float(np.hypot(now_x - start[1], now_y - start[2])) / dt / self.body_px()

    def _drop_speed(self, now: float, series: deque[tuple[float, float]]) -> float:
        """The fastest downward move of a y series (body heights/s) ending within ``fall_window_s``,
        each over at least 0.2 s, so detector jitter between two frames is not a fall."""
        recent = [(t, y) for t, y in series if t >= now - self.params.fall_window_s - 1.0]
        body = self.body_px()
        best = 0.0
        for i, (t0, y0) in enumerate(recent):
            for t1, y1 in recent[i + 1 :]:
                if t1 - t0 >= 0.2 and t1 >= now - self.params.fall_window_s:
                    best = max(best, (y1 - y0) / (t1 - t0) / body)
                    break
        return best

    def update(self, time_s: float, record: bool = True) -> dict[str, float]:
        """Recompute every cue at ``time_s``; returns {cue: value in [0, 1]} (also kept in ``values``).

        ``record`` adds the values to the history kept for evidence, at most one snapshot every
        :data:`HISTORY_GAP_S` of media time.
        """
        p = self.params
        posture_now = self.posture
        lying = posture_now.lying if posture_now is not None else 0.0
        if lying >= 0.5:
            self.lying_since = time_s if self.lying_since is None else self.lying_since
        else:
            self.lying_since = None
        measured = self.speed()
        speed = 0.0 if measured is None else measured  # running needs a measured speed
        still_s = time_s - self.still_since if self.still_since is not None else 0.0
        ground_s = time_s - self.lying_since if self.lying_since is not None else 0.0
        drop = max(self._drop_speed(time_s, self.hips), self._drop_speed(time_s, self.centres))
        values = {
            "upright": posture_now.upright if posture_now is not None else 0.0,
            "crouching": posture_now.crouching if posture_now is not None else 0.0,
            "lying": lying,
            "fall": logistic(drop, p.fall_drop_speed, 0.2 * p.fall_drop_speed) * lying,
            "running": logistic(speed, p.running_speed, 0.25 * p.running_speed) * (1.0 - lying),
            "still_long": logistic(still_s, p.still_long_s, 0.2 * p.still_long_s) * (1.0 - lying),
            "arms_raised": posture_now.arms_raised if posture_now is not None else 0.0,
            "ground_long": logistic(ground_s, p.ground_long_s, 0.2 * p.ground_long_s) * lying,
        }
        assert tuple(values) == CUES
        self.values = {name: round(float(value), 4) for name, value in values.items()}
        self.evidence = {
            "speed_body_heights_per_s": None if measured is None else round(measured, 3),
            "still_s": round(still_s, 2),
            "lying_s": round(ground_s, 2),
            "hip_drop_body_heights_per_s": round(drop, 3),
            "body_px": round(self.body_px(), 1),
            **(posture_now.evidence if posture_now is not None else {"pose": "no sample yet"}),
        }
        if record and (not self.snapshots or time_s - self.snapshots[-1][0] >= HISTORY_GAP_S):
            self.snapshots.append((round(time_s, 3), dict(self.values)))
        return self.values
