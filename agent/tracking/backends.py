"""ByteTrack and BoT-SORT from ``ultralytics.trackers``, built from our tracker config.

Ultralytics is imported through :func:`agent._ultralytics.import_ultralytics` when a tracker is
built, never at ``import agent.tracking``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from agent._ultralytics import import_ultralytics
from agent.config import BotSortConfig, ByteTrackConfig
from agent.types import Detections

REFERENCE_FRAME_RATE = 30.0  # frames/s at which track_buffer is counted, as in ByteTrack


class TrackerBackend(Protocol):
    """What :class:`~agent.tracking.camera_tracker.CameraTracker` uses of an ultralytics tracker."""

    tracked_stracks: list[Any]
    lost_stracks: list[Any]

    def update(self, results: Any, img: np.ndarray | None = None) -> np.ndarray: ...

    def reset(self) -> None: ...


class TrackerInput:
    """The NumPy-backed, boolean-indexable detections object ultralytics trackers take.

    Exposes ``conf``, ``cls``, ``xyxy`` and ``xywh`` (centre x, centre y, width, height in pixels)
    like ultralytics' ``Boxes.cpu().numpy()``.
    """

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, dtype=np.float32)
        self.cls = np.asarray(cls, dtype=np.float32)

    @classmethod
    def from_detections(cls, detections: Detections) -> TrackerInput:
        return cls(detections.xyxy, detections.confidence, detections.class_id)

    @property
    def xywh(self) -> np.ndarray:
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([self.xyxy[:, :2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> TrackerInput:
        return TrackerInput(self.xyxy[index], self.conf[index], self.cls[index])


def held_lost_ids(tracker: TrackerBackend) -> set[int]:
    """Backend ids of the lost tracks the tracker still holds to be found again.

    A track removed on this frame is marked removed but stays in ultralytics' lost list until the
    next update (it subtracts the removed list before adding the frame's removals), so the state
    is what counts.
    """
    from ultralytics.trackers.basetrack import TrackState

    return {int(track.track_id) for track in tracker.lost_stracks if track.state != TrackState.Removed}


def track_buffer_frames(track_buffer: int, frame_rate: float) -> int:
    """Frames a lost track is kept at ``frame_rate`` (frames/s) for a buffer counted at 30 frames/s.

    ByteTrack scales its buffer with the stream's frame rate so that it covers the same time; at
    the default 30 frames, that is one second whatever rate the camera is analysed at.
    """
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    return max(1, int(frame_rate / REFERENCE_FRAME_RATE * track_buffer))


def make_backend(config: ByteTrackConfig | BotSortConfig, frame_rate: float) -> TrackerBackend:
    """Build an ultralytics BYTETracker or BOTSORT (without ReID) with thresholds from ``config``."""
    import_ultralytics()
    from ultralytics.trackers import BOTSORT, BYTETracker

    args = SimpleNamespace(
        tracker_type=config.type,
        track_high_thresh=config.track_high_thresh,
        track_low_thresh=config.track_low_thresh,
        new_track_thresh=config.new_track_thresh,
        track_buffer=track_buffer_frames(config.track_buffer, frame_rate),
        match_thresh=config.match_thresh,
        fuse_score=config.fuse_score,
    )
    if isinstance(config, BotSortConfig):
        args.gmc_method = None if config.gmc_method == "none" else config.gmc_method
        args.proximity_thresh = config.proximity_thresh
        args.appearance_thresh = config.appearance_thresh
        args.with_reid = False  # appearance comes from the CLIP crop embedder downstream, not a ReID model
        args.model = "auto"
        tracker: TrackerBackend = BOTSORT(args)
    else:
        tracker = BYTETracker(args)
    return tracker
