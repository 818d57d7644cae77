"""Multi-object tracking, one tracker per camera, with person lifecycle events.

ByteTrack and BoT-SORT are NumPy/OpenCV ports (:mod:`agent.tracking.bytetrack`,
:mod:`agent.tracking.botsort`), followed by re-association of new tracks with recently lost people
(:mod:`agent.tracking.reassociation`). Nothing here imports torch or ultralytics, and the trackers
load on first use, so that ``agent.config`` can nest :mod:`agent.tracking.config` alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from agent.config_yaml import ConfigError, parse_yaml_union
from agent.lazy_exports import lazy_exports
from agent.tracking.config import TrackerConfig

if TYPE_CHECKING:
    from agent.tracking.camera_tracker import CameraTracker, TrackInfo

__getattr__ = lazy_exports(
    __name__, {"CameraTracker": "agent.tracking.camera_tracker", "TrackInfo": "agent.tracking.camera_tracker"}
)

__all__ = ["CameraTracker", "TrackInfo", "build_tracker", "load_tracker_config"]


def build_tracker(
    config: TrackerConfig, camera_id: str, frame_rate: float, first_id: int = 1
) -> CameraTracker:
    """Build a fresh tracker for one camera.

    Args:
        config: the ``tracker`` section of the agent config (ByteTrack or BoT-SORT).
        camera_id: the camera it tracks, copied into its events.
        frame_rate: analysed frames per second of that camera; ``track_buffer`` counts frames at
            30 frames/s and is scaled to this rate, as ByteTrack does.
        first_id: the first person id (a camera changed at run time continues its old ids).
    """
    from agent.tracking.backends import make_backend, make_reassociator, track_buffer_frames
    from agent.tracking.camera_tracker import CameraTracker

    backend = make_backend(config, frame_rate)
    buffer = track_buffer_frames(config.track_buffer, frame_rate)
    reassociator = make_reassociator(config.reassociation)
    name = f"{config.type}(buffer={buffer} frames"
    name += f", re-association {config.reassociation.max_gap_s:g} s)" if reassociator else ")"
    return CameraTracker(camera_id, backend, name=name, reassociator=reassociator, first_id=first_id)


def load_tracker_config(path: str | Path) -> TrackerConfig:
    """Read a tracker settings file such as ``configs/trackers/bytetrack.yaml``.

    Raises:
        ConfigError: when the file cannot be read or does not hold a valid tracker section.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read tracker config {path}: {exc.strerror or exc}") from exc
    config: TrackerConfig = parse_yaml_union(TrackerConfig, text, str(path), what="tracker config")
    return config
