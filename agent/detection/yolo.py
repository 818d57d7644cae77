"""An ultralytics YOLO detection model (``.pt``, ``.onnx`` or TensorRT ``.engine``) as a detector.

Ultralytics is imported through :func:`agent._ultralytics.import_ultralytics`, so it neither probes
the network nor pip-installs requirements. Model paths are resolved to existing files before they
reach ultralytics, which would otherwise try to download any bare name it recognises.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent._ultralytics import import_ultralytics
from agent.config import YoloDetectorConfig
from agent.detection.base import Detector, DetectorError
from agent.types import Detections

logger = logging.getLogger(__name__)

# Runtime each model format needs, and the extra that installs it.
RUNTIMES = {".onnx": ("onnxruntime", "watchword"), ".engine": ("tensorrt", "watchword[trt]")}


def _model_path(path: Path) -> Path:
    path = path.expanduser().resolve()
    if not path.exists():
        raise DetectorError(f"yolo model not found: {path} (detector.model); nothing is downloaded")
    if path.is_file() and (not os.access(path, os.R_OK) or path.stat().st_size == 0):
        raise DetectorError(f"yolo model is unreadable or empty: {path}")
    runtime = RUNTIMES.get(path.suffix)
    if runtime is not None and importlib.util.find_spec(runtime[0]) is None:
        raise DetectorError(f"{path.name} needs the {runtime[0]} package: pip install '{runtime[1]}'")
    _verify_export(path)
    if path.suffix == ".onnx":
        from engines import EngineError
        from engines.onnx_check import check_onnx_file

        try:
            check_onnx_file(path)  # onnxruntime can crash on some malformed files instead of raising
        except EngineError as exc:
            raise DetectorError(f"detector.model: {exc}") from exc
    return path


def _verify_export(path: Path) -> None:
    """A model inside a ``watchword export yolo`` directory is used only if the manifest vouches for it."""
    if not (path.parent / "manifest.json").is_file():
        return
    from engines import ManifestError, verify_manifest

    try:
        manifest = verify_manifest(path.parent)
    except ManifestError as exc:
        raise DetectorError(f"detector.model: {exc}") from exc
    if path.name not in manifest.files:
        raise DetectorError(f"refusing {path}: not listed in {path.parent / 'manifest.json'}")


class YoloDetector(Detector):
    """Runs an ultralytics detection model on batches of frames.

    Ultralytics letterboxes each frame to ``imgsz`` pixels and maps boxes back to the frame's
    pixels. For ``.onnx`` and ``.engine`` models ultralytics opens the runtime session on the first
    inference, so their load time shows up in the warm-up time.
    """

    def __init__(self, config: YoloDetectorConfig) -> None:
        path = _model_path(config.model)
        super().__init__(f"yolo({path.name}, {config.device})", config.batch_size)
        self.model_path = path
        started = time.perf_counter()
        import_ultralytics()
        from ultralytics import YOLO
        from ultralytics.cfg import DEFAULT_CFG_DICT

        try:
            self._model: Any = YOLO(str(path), task="detect")
        except (TypeError, RuntimeError, ValueError, OSError, EOFError) as exc:
            raise DetectorError(f"cannot load yolo model {path}: {exc}") from exc
        if getattr(self._model, "task", "detect") != "detect":
            raise DetectorError(f"{path} is a {self._model.task} model; the detector needs a detect model")
        self._predict_args: dict[str, Any] = {
            "conf": config.confidence,
            "iou": config.iou,
            "imgsz": config.imgsz,
            "device": config.device,
            # ultralytics 8.4 replaced the `half` flag by `quantize` (and warns on every call about `half`).
            **(
                {"quantize": 16 if config.half else None}
                if "quantize" in DEFAULT_CFG_DICT
                else {"half": config.half}
            ),
            "classes": list(config.classes) or None,
            "verbose": False,
            "save": False,
            "stream": False,
        }
        self._started(time.perf_counter() - started)

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        if self._model is None:
            raise DetectorError(f"{self.name} is closed")
        results = self._model.predict(source=images, **self._predict_args)
        return [self._to_detections(result.boxes) for result in results]

    @staticmethod
    def _to_detections(boxes: Any) -> Detections:
        if boxes is None or len(boxes) == 0:
            return Detections.empty()
        boxes = boxes.cpu().numpy()
        return Detections(
            xyxy=boxes.xyxy.astype(np.float32),
            confidence=boxes.conf.astype(np.float32),
            class_id=boxes.cls.astype(np.int64),
        )

    def _warm_up(self) -> None:
        try:
            super()._warm_up()
        except Exception as exc:  # the runtime session of .onnx/.engine files opens here
            raise DetectorError(
                f"cannot run yolo model {self.model_path}: {type(exc).__name__}: {exc}"
            ) from exc

    def _release(self) -> None:
        self._model = None
