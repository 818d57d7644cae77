"""Cameras kept in the state database and changed while the agent runs."""

from agent.cameras.store import CameraError, CameraNotFoundError, CameraStore, parse_camera, redacted

__all__ = ["CameraError", "CameraNotFoundError", "CameraStore", "parse_camera", "redacted"]
