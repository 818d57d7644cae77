"""Cameras: the YAML's applied to the state database at every start, others added while the agent runs."""

from agent.cameras.store import (
    CameraError,
    CameraNotFoundError,
    CameraStore,
    parse_camera,
    read_stored_cameras,
    redacted,
    site_cameras,
)

__all__ = [
    "CameraError",
    "CameraNotFoundError",
    "CameraStore",
    "parse_camera",
    "read_stored_cameras",
    "redacted",
    "site_cameras",
]
