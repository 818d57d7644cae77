"""YOLO detection graphs on ``engines/``: ONNX Runtime, TensorRT, or torch for ultralytics ``.pt`` files.

The detector is a thin adapter: :mod:`engines.yolo_processing` letterboxes frames and decodes the
raw head output (class filter, NMS, boxes back to frame pixels) in numpy, the same code that checks
``watchword export yolo``'s graphs; the engine runs the graph with the engine cache, manifest check
and CPU-fallback rules every model shares.

- ``.onnx``: ``detector.engine`` picks ONNX Runtime (providers in order) or TensorRT (an engine
  built on this machine from the ONNX file and cached). A file inside a ``watchword export yolo``
  directory is used only if its manifest vouches for it.
- ``.engine``: a TensorRT engine made by ``watchword export yolo --engine tensorrt`` (with its
  sidecar); one for another GPU or TensorRT version is rebuilt from its ONNX file.
- ``.pt``: the ultralytics model on torch (``detector.device``); needs ``watchword[ultralytics]``.
  Only this format imports torch and ultralytics.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from agent.detection.base import BufferedDetector, DetectorError, PreparedBatch
from agent.detection.config import YoloDetectorConfig
from agent.detection.graph_engine import open_graph_engine
from agent.embedding.config import TensorRTEngineConfig, TorchEngineConfig
from agent.types import Detections
from engines import Engine, EngineError, EngineSpec, TensorSpec
from engines.yolo_processing import Letterbox, decode, letterbox_into

logger = logging.getLogger(__name__)

INPUT = "images"
OUTPUT = "output0"
# Runtime each model format needs, and the extra that installs it.
RUNTIMES = {
    ".onnx": ("onnxruntime", "watchword[cpu] or watchword[gpu]"),
    ".engine": ("tensorrt", "watchword[trt]"),
    ".pt": ("ultralytics", "watchword[ultralytics]"),
}


def _model_path(path: Path, config: YoloDetectorConfig) -> Path:
    path = path.expanduser().resolve()
    if not path.exists():
        raise DetectorError(f"yolo model not found: {path} (detector.model); nothing is downloaded")
    if path.is_file() and (not os.access(path, os.R_OK) or path.stat().st_size == 0):
        raise DetectorError(f"yolo model is unreadable or empty: {path}")
    module, extra = RUNTIMES[path.suffix]
    if path.suffix == ".onnx" and isinstance(config.engine, TensorRTEngineConfig):
        module, extra = "tensorrt", "watchword[trt]"
    if importlib.util.find_spec(module) is None and not getattr(config.engine, "allow_cpu_fallback", False):
        raise DetectorError(f"{path.name} needs the {module} package: pip install '{extra}'")
    _verify_export(path)
    if path.suffix == ".onnx":
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


def _graph_engine(path: Path, config: YoloDetectorConfig) -> Engine:
    """Open an ``.onnx`` or ``.engine`` graph on the configured engine."""
    engine_config = config.engine
    if isinstance(engine_config, TorchEngineConfig):
        if path.suffix == ".engine":
            engine_config = TensorRTEngineConfig(type="tensorrt")
        else:
            raise DetectorError(
                f"detector.engine type torch runs ultralytics .pt models; {path.name} is an ONNX graph "
                "(use the onnxruntime or tensorrt engine)"
            )
    dims = {"height": config.imgsz, "width": config.imgsz}
    return open_graph_engine(path, engine_config, batch_size=config.batch_size, dims=dims)


def _torch_engine(path: Path, config: YoloDetectorConfig) -> Engine:
    """An ultralytics ``.pt`` model on the torch engine (imports torch and ultralytics)."""
    from engines.torch_engine import TorchEngine
    from engines.ultralytics_import import load_detection_model

    try:
        module, names, _stride = load_detection_model(str(path), config.device, config.half)
    except ValueError as exc:
        raise DetectorError(str(exc)) from exc
    except (TypeError, RuntimeError, OSError, EOFError, KeyError, AttributeError) as exc:
        raise DetectorError(f"cannot load yolo model {path}: {type(exc).__name__}: {exc}") from exc
    channels = 4 + len(names)
    spec = EngineSpec(
        inputs=(TensorSpec(INPUT, ("batch", 3, config.imgsz, config.imgsz), "float32"),),
        outputs=(TensorSpec(OUTPUT, ("batch", channels, -1), "float32"),),
    )
    return TorchEngine(module=module, spec=spec, device=config.device, warmup=True)


class YoloDetector(BufferedDetector):
    """A YOLO detection graph (ultralytics layout) on an engine, batched across frames.

    Each frame is letterboxed to ``imgsz`` square pixels; boxes come back in the frame's pixels,
    scores strictly above ``confidence``, class-wise NMS at ``iou``, only ``classes``.
    """

    def __init__(self, config: YoloDetectorConfig) -> None:
        path = _model_path(config.model, config)
        try:
            engine = _torch_engine(path, config) if path.suffix == ".pt" else _graph_engine(path, config)
        except DetectorError:
            raise
        except EngineError as exc:
            raise DetectorError(f"cannot run yolo model {path}: {exc}") from exc
        batch = self._check_spec(engine, path, config)
        super().__init__(f"yolo({path.name}, {engine.name})", engine, batch)
        self.model_path = path
        self.imgsz = config.imgsz
        self.confidence = config.confidence
        self.iou = config.iou
        self.classes = list(config.classes)
        self._input = engine.spec.inputs[0]
        self._output = engine.spec.output_names[0]
        # Input buffers, each (batch, 3, imgsz, imgsz) in the graph's dtype, allocated on first use:
        # two the pipeline alternates between (one being filled while the other is inferred) and one
        # for detect(); frames are letterboxed straight into them, and the engine reads a view.
        self._buffers: list[np.ndarray | None] = [None, None, None]
        self._canvases: list[np.ndarray | None] = [None, None, None]

    @staticmethod
    def _check_spec(engine: Engine, path: Path, config: YoloDetectorConfig) -> int:
        """The batch size to use; refuses graphs whose input is not (B, 3, imgsz, imgsz)."""
        tensor = engine.spec.inputs[0]
        if len(engine.spec.inputs) != 1 or len(tensor.shape) != 4:
            engine.close()
            raise DetectorError(f"{path.name} is not a YOLO detection graph: inputs {engine.spec.inputs}")
        for axis in (2, 3):
            size = tensor.shape[axis]
            if isinstance(size, int) and size >= 0 and size != config.imgsz:
                engine.close()
                raise DetectorError(
                    f"{path.name} takes {size} px inputs; set detector.imgsz: {size} (it is {config.imgsz})"
                )
        fixed = tensor.shape[0]
        if isinstance(fixed, int) and fixed > 0 and fixed != config.batch_size:
            logger.info(
                "%s has a fixed batch of %d frames; detecting in batches of %d", path.name, fixed, fixed
            )
            return fixed
        return config.batch_size

    def _fill(self, images: list[np.ndarray], slot: int) -> PreparedBatch:
        """Letterbox ``images`` into input buffer ``slot``; the batch holds a view of its first rows."""
        buffer, canvas = self._buffers[slot], self._canvases[slot]
        if buffer is None or canvas is None:
            fixed = self._input.shape[0]
            rows = fixed if isinstance(fixed, int) and fixed > 0 else self.batch_size
            # a fixed-batch graph is padded with blank frames: zeros, never rewritten
            buffer = np.zeros((rows, 3, self.imgsz, self.imgsz), np.float32)
            canvas = np.empty((self.imgsz, self.imgsz, 3), np.uint8)
            self._buffers[slot], self._canvases[slot] = buffer, canvas
        geometries = [letterbox_into(image, buffer[i], canvas) for i, image in enumerate(images)]
        fixed = self._input.shape[0]
        rows = buffer.shape[0] if isinstance(fixed, int) and fixed > 0 else len(images)
        if isinstance(fixed, int) and fixed > len(images):
            buffer[len(images) :] = 0.0  # rows of an earlier, fuller batch
        return PreparedBatch(images, (buffer[:rows], geometries))

    def _infer_prepared(self, batch: PreparedBatch) -> np.ndarray:
        pixels, _geometries = batch.inputs
        pixels = pixels.astype(np.dtype(self._input.dtype), copy=False)
        output: np.ndarray = self.engine.infer({self._input.name: pixels})[self._output]
        return output[: len(batch.images)]

    def _finish(self, batch: PreparedBatch, raw: np.ndarray) -> list[Detections]:
        geometries: list[Letterbox] = batch.inputs[1]
        decoded = decode(raw, geometries, self.confidence, self.iou, self.classes)
        return [
            Detections(xyxy=found.xyxy, confidence=found.confidence, class_id=found.class_id)
            if len(found.confidence)
            else Detections.empty()
            for found in decoded
        ]
