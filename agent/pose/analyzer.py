"""The pose stage: keypoints per track on the crop-embedding cadence, cues per track on every frame.

Runs after tracking, before matching. A track gets a pose sample when it is new, every
``interval_s`` of media time, and sooner when its box changes shape (someone falling or lying down
changes the aspect ratio long before the interval is up); all samples of a batch of frames, from
every camera, go through the pose engine together. Motion cues are updated on every frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.api.metrics import Metric, stage_metrics
from agent.pose.config import PoseConfig
from agent.pose.cues import TrackCues
from agent.pose.estimator import PoseEstimator
from agent.types import Frame, FrameResult, TrackEventKind

log = logging.getLogger(__name__)

EVIDENCE_FRAMES_APART = 1.5
"""An evidence frame shows the keypoints of a pose sample at most this many frame intervals away
(the same frame or the next one): at 10 f/s a walking person moves 10-20 px a frame."""


@dataclass
class PoseTrack:
    """What the pose stage keeps of one track."""

    cues: TrackCues
    last_pose_time: float = -float("inf")
    last_aspect: float = 0.0
    frame: Frame | None = None  # the frame of the latest pose sample (a cue candidate's evidence)
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # the track's box in it, pixels


@dataclass
class PoseStats:
    """What the pose stage did: engine calls, crops and the seconds spent in them."""

    calls: int = 0
    crops: int = 0
    seconds: float = 0.0
    cue_seconds: float = 0.0


@dataclass
class PoseAnalyzer:
    """Adds ``cues`` ({track id: {cue: value}}) to each frame's extra; keeps per-track cue state.

    Args:
        config: the ``pose:`` section.
        estimator: the MoveNet runner.
    """

    config: PoseConfig
    estimator: PoseEstimator
    tracks: dict[tuple[str, int], PoseTrack] = field(default_factory=dict)
    stats: PoseStats = field(default_factory=PoseStats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _needs_pose(self, track: PoseTrack, aspect: float, now: float) -> bool:
        if now - track.last_pose_time >= self.config.interval_s:
            return True
        if now - track.last_pose_time < self.config.min_interval_s:
            return False  # a detector's box jitters: shape changes re-sample at most this often
        change = abs(aspect - track.last_aspect) / max(track.last_aspect, 1e-6)
        return change >= self.config.shape_change

    def metrics(self) -> list[Metric]:
        """MoveNet's calls and the seconds spent in them (the ``pose`` stage)."""
        return stage_metrics("pose", self.stats.seconds, self.stats.calls)

    def process(self, results: list[FrameResult]) -> None:
        with self._lock:
            self._process(results)

    def _process(self, results: list[FrameResult]) -> None:
        pending: list[tuple[PoseTrack, float, tuple[float, float, float, float], float, int]] = []
        regions: list[tuple[np.ndarray, tuple[float, float, float, float]]] = []
        started = time.perf_counter()
        for result in results:
            frame = result.frame
            now = frame.media_time
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    self.tracks.pop((frame.camera_id, event.track_id), None)
            ids = result.tracks.tracker_id
            if ids is None:
                continue
            params = self.config.params_for(frame.camera_id)
            for track_id, xyxy in zip(ids, result.tracks.xyxy, strict=True):
                key = (frame.camera_id, int(track_id))
                track = self.tracks.get(key)
                if track is None:
                    track = self.tracks[key] = PoseTrack(TrackCues(params, self.config.history))
                box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
                track.cues.observe(now, box)
                aspect = (box[2] - box[0]) / max(box[3] - box[1], 1e-6)
                if self._needs_pose(track, aspect, now):
                    regions.append((frame.image, box))
                    pending.append((track, now, box, aspect, frame.height))
                    # planned now, so a later frame of the same batch does not sample it again
                    track.frame, track.box = frame, box
                    track.last_pose_time, track.last_aspect = now, aspect
        self.stats.cue_seconds += time.perf_counter() - started
        if regions:
            t0 = time.perf_counter()
            keypoints = self.estimator.estimate(regions)
            self.stats.seconds += time.perf_counter() - t0
            self.stats.calls += 1
            self.stats.crops += len(regions)
            for (track, now, box, _, height), points in zip(pending, keypoints.points, strict=True):
                track.cues.observe_pose(now, points, box, height)
        t1 = time.perf_counter()
        for result in results:
            now = result.frame.media_time
            cues: dict[str, dict[str, float]] = {}
            ids = result.tracks.tracker_id
            for track_id in [] if ids is None else ids:
                track = self.tracks.get((result.frame.camera_id, int(track_id)))
                if track is not None:
                    cues[str(int(track_id))] = track.cues.update(now)
            result.extra["cues"] = cues
        self.stats.cue_seconds += time.perf_counter() - t1

    def track(self, camera_id: str, track_id: int) -> PoseTrack | None:
        """The pose state of a track, or None when it has none (yet, or any more)."""
        return self.tracks.get((camera_id, track_id))

    def evidence(
        self, camera_id: str, track_id: int, frame_time: float | None = None
    ) -> dict[str, Any] | None:
        """Cue values, their evidence and history of a track (for alerts), with the keypoints of the
        pose sample taken on the evidence frame (media time ``frame_time``, seconds) or a frame next
        to it; ``keypoints`` is None when there is none, since keypoints taken further away are off a
        moving person. ``frame_time`` None: the latest sample's keypoints."""
        track = self.tracks.get((camera_id, track_id))
        if track is None:
            return None
        cues = track.cues
        if frame_time is None:
            sample = cues.pose_samples[-1] if cues.pose_samples else None
        else:
            sample = cues.keypoints_at(frame_time, EVIDENCE_FRAMES_APART * cues.frame_interval_s())
        return {
            "values": dict(cues.values),
            "evidence": dict(cues.evidence),
            "posture": cues.posture.label if cues.posture is not None else None,
            "history": [{"t": t, **values} for t, values in cues.snapshots],
            "keypoints": None if sample is None else np.round(sample[1], 2).tolist(),
            "keypoints_t": None if sample is None else round(sample[0], 3),
            "model": self.estimator.version,
        }

    def close(self) -> None:
        self.estimator.close()
