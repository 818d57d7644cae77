"""ByteTrack and BoT-SORT (:mod:`agent.tracking.bytetrack`, :mod:`agent.tracking.botsort`) built
from our tracker config. Both are NumPy/OpenCV ports: building or running one imports neither torch
nor ultralytics."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from agent.tracking.botsort import BotSortTracker
from agent.tracking.bytetrack import ByteTracker
from agent.tracking.config import BotSortConfig, ByteTrackConfig, ReassociationConfig
from agent.tracking.reassociation import Reassociator

REFERENCE_FRAME_RATE = 30.0  # frames/s at which track_buffer is counted, as in ByteTrack


class TrackerBackend(Protocol):
    """What :class:`~agent.tracking.camera_tracker.CameraTracker` uses of a tracker."""

    def update(
        self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, image: np.ndarray | None = None
    ) -> np.ndarray:
        """(M, 2) rows of [backend track id, detection row] for the confirmed tracks of this frame."""
        ...

    def lost_ids(self) -> set[int]:
        """Backend ids of the lost tracks still held to be found again."""
        ...

    def forget(self, track_id: int) -> None:
        """Stop holding a lost track."""
        ...

    def reset(self) -> None: ...


def track_buffer_frames(track_buffer: int, frame_rate: float) -> int:
    """Frames a lost track is kept at ``frame_rate`` (frames/s) for a buffer counted at 30 frames/s.

    ByteTrack scales its buffer with the stream's frame rate so that it covers the same time; at
    the default 30 frames, that is one second whatever rate the camera is analysed at.
    """
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    return max(1, int(frame_rate / REFERENCE_FRAME_RATE * track_buffer))


def make_backend(config: ByteTrackConfig | BotSortConfig, frame_rate: float) -> TrackerBackend:
    """A ByteTrack or BoT-SORT tracker with the thresholds of ``config``."""
    thresholds: dict[str, Any] = {
        "track_high_thresh": config.track_high_thresh,
        "track_low_thresh": config.track_low_thresh,
        "new_track_thresh": config.new_track_thresh,
        "max_frames_lost": track_buffer_frames(config.track_buffer, frame_rate),
        "match_thresh": config.match_thresh,
        "fuse_score": config.fuse_score,
    }
    if isinstance(config, BotSortConfig):
        return BotSortTracker(gmc_method=config.gmc_method, **thresholds)
    return ByteTracker(**thresholds)


def make_reassociator(config: ReassociationConfig) -> Reassociator | None:
    """The re-association stage of ``config``, or None when it is disabled."""
    if not config.enabled:
        return None
    return Reassociator(
        max_gap_s=config.max_gap_s,
        max_distance=config.max_distance,
        min_similarity=config.min_similarity,
        max_size_change=config.max_size_change,
        min_embedding_similarity=config.min_embedding_similarity,
        decision_window_s=config.decision_window_s,
    )
