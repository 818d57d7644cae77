"""Configuration of one camera (``cameras[]``): its URI, analysis rate and size, queue and reconnects."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.config_rules import StrictConfigModel
from agent.uri_rules import camera_uri_problem, missing_file_problem
from agent.zone_names import ZONE_NAME

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ReconnectConfig(StrictConfigModel):
    """Exponential backoff between reconnect attempts of a live camera, in seconds."""

    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(30.0, gt=0)
    factor: float = Field(2.0, ge=1)

    @model_validator(mode="after")
    def _max_at_least_initial(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be at least initial_s")
        return self


class ZoneConfig(StrictConfigModel):
    """A named polygon on the camera image; points ``[x, y]`` normalised (0 left/top .. 1 right/bottom)."""

    name: str = Field(pattern=ZONE_NAME)
    points: list[list[float]] = Field(min_length=3, max_length=64)

    @field_validator("points")
    @classmethod
    def _normalised_pairs(cls, points: list[list[float]]) -> list[list[float]]:
        for index, point in enumerate(points):
            if len(point) != 2:
                raise ValueError(f"point {index} must be [x, y], got {len(point)} numbers")
            if not all(0.0 <= v <= 1.0 for v in point):
                raise ValueError(
                    f"point {index} {point} is outside 0..1: zone points are fractions of the image's "
                    "width and height, not pixels"
                )
        return [[float(x), float(y)] for x, y in points]


class CameraConfig(StrictConfigModel):
    """One camera. ``uri`` is a path, ``file://``, ``rtsp://``, ``http(s)://``, ``v4l2://`` or ``test://``."""

    id: str = Field(pattern=CAMERA_ID)
    uri: str = Field(min_length=1)
    enabled: bool = True
    analysis_fps: float | None = Field(
        None, gt=0, description="frames/s analysed; None keeps the native rate"
    )
    max_width: int = Field(1280, ge=16, le=8192, description="frames are scaled down to fit, in pixels")
    max_height: int = Field(720, ge=16, le=8192)
    loop: bool = Field(False, description="file sources: start again at the end instead of ending")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    latency_ms: int = Field(200, ge=0, le=10000, description="RTSP jitter buffer")
    queue_size: int = Field(4, ge=1, le=256, description="frames buffered before the oldest is dropped")
    stall_timeout_s: float = Field(10.0, gt=0, description="restart a live source silent this long")
    connect_timeout_s: float = Field(10.0, gt=0)
    reconnect: ReconnectConfig = ReconnectConfig()
    decode: Literal["auto", "software", "nvdec", "jetson", "vaapi"] = Field(
        "auto", description="video decoder: auto probes nvdec/jetson/vaapi and falls back to software"
    )

    zones: list[ZoneConfig] = Field(
        default_factory=list, max_length=32, description="named polygons queries can be limited to"
    )

    @field_validator("zones")
    @classmethod
    def _unique_zone_names(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        names = [zone.name for zone in zones]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"zone names must be unique per camera: {', '.join(repeated)} repeated")
        return zones

    @field_validator("uri")
    @classmethod
    def _usable_uri(cls, uri: str, info: ValidationInfo) -> str:
        problem = camera_uri_problem(uri)
        # A file camera in the YAML must have its file, so that a missing one stops the start at once
        # with this key (``parse_config`` asks for it: ``context={"check_files": True}``). Cameras
        # read back from the state database are not refused for a vanished file, and the API checks
        # its media folders first: an answer of "not found" outside them would tell which files exist.
        if problem is None and (info.context or {}).get("check_files", False):
            problem = missing_file_problem(uri)
        if problem is not None:
            raise ValueError(problem)
        return uri
