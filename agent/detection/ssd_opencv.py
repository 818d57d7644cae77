"""TensorFlow's ssd_mobilenet_v2_coco read by OpenCV's DNN module (``detector.engine: opencv-dnn``).

The default runs the same model converted to ONNX (:mod:`agent.detection.ssd`); this engine is kept
for a user who asks for it, and needs OpenCV 4: OpenCV 5 removed the TensorFlow importer, which the
start reports in one line instead of blaming the file.

The graph ends in a DetectionOutput layer that returns ``[image_id, class, score, x1, y1, x2, y2]``
rows with coordinates normalised to [0, 1], 100 rows per image, unused rows zero-filled (so they
read as image 0, class 0). Classes use the 1-based 91-id COCO label map of the TensorFlow Object
Detection API; they are mapped to the contiguous 0-based 80-class ids that YOLO uses (0 = person).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from agent.detection.base import Detector, DetectorError
from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd import coco91_to_80, source_files, to_detections
from agent.detection.ssd_graph import trimmed_frozen_graph
from agent.types import Detections
from engines import Engine, EngineError, create_engine

logger = logging.getLogger(__name__)

CHECK_SHAPE = (480, 640)  # height, width in pixels of the synthetic frames of the batching check
BATCHING_VERDICTS = "opencv-dnn-batching.json"  # in the cache directory: check key -> batches correctly


def _load_engine(model: Path, graph: Path, input_size: int, cache_dir: Path | None) -> Engine:
    """The network on the opencv-dnn engine, read from the trimmed frozen graph when the cache has
    (or can make) one; a damaged trimmed copy is deleted and the full graph read instead."""
    trimmed = trimmed_frozen_graph(model, graph, cache_dir) if cache_dir is not None else model
    if trimmed != model:
        try:
            return create_engine("opencv-dnn", trimmed, config=graph, input_size=input_size)
        except EngineError as exc:
            logger.warning(
                "%s: the trimmed copy %s is damaged (%s); reading the full graph", model.name, trimmed, exc
            )
            with contextlib.suppress(OSError):
                trimmed.unlink()
    try:
        return create_engine("opencv-dnn", model, config=graph, input_size=input_size)
    except EngineError as exc:
        raise DetectorError(
            f"cannot load ssd-mobilenet model {model} with graph {graph}: the file is corrupt or not a "
            f"TensorFlow frozen graph and its text graph ({exc})"
        ) from exc


def _same_rows(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """Whether two sets of detection rows match one-to-one (class equal, score and box within atol)."""
    if a.shape != b.shape:
        return False
    unmatched = list(range(len(b)))
    for row in a:
        for position, j in enumerate(unmatched):
            if b[j, 1] == row[1] and np.abs(b[j, 2:] - row[2:]).max() <= atol:
                del unmatched[position]
                break
        else:
            return False
    return True


class OpenCvSSDDetector(Detector):
    """ssd_mobilenet_v2_coco (300x300 input) on the OpenCV DNN engine, batched across frames.

    Frames are resized to ``input_size`` square without letterboxing, as the model was trained.
    Boxes come back in each frame's pixels. Class-wise non-maximum suppression at ``nms_iou`` is
    applied after the graph's own (IoU 0.6).
    """

    def __init__(self, config: SSDDetectorConfig, cache_dir: Path | None = None) -> None:
        from export.ssd import opencv_reads_tensorflow

        if not opencv_reads_tensorflow():
            raise DetectorError(
                f"detector.engine opencv-dnn reads TensorFlow graphs only with OpenCV 4, and this is OpenCV "
                f"{cv2.__version__} (its TensorFlow importer was removed): use the default engine "
                "(onnxruntime), or install opencv-python<5"
            )
        model, graph = source_files(config)
        engine = _load_engine(model, graph, config.input_size, cache_dir)
        super().__init__(f"ssd-mobilenet({model.name})", engine, config.batch_size)
        self.confidence = config.confidence
        self.nms_iou = config.nms_iou
        self.input_size = config.input_size
        self._keep = np.asarray(config.classes, dtype=np.int64)
        self._class_map = coco91_to_80()
        self.batched = True  # set False below if batched output disagrees with per-image output
        verdicts = None
        if cache_dir is not None:
            verdicts = _BatchingVerdicts(cache_dir, _batching_key(model, graph, config))
        self._settle_batching(verdicts)

    def _settle_batching(self, verdicts: _BatchingVerdicts | None) -> None:
        """Run the batching check, or take the verdict of an earlier start (same OpenCV and model)."""
        cached = verdicts.read() if verdicts is not None and self.batch_size > 1 else None
        if cached is not None:
            self.batched = cached
            logger.debug("%s: batching check cached (batches correctly: %s)", self.name, cached)
            if not cached:
                self._warn_unbatched()
            return
        self._check_batching()
        if verdicts is not None and self.batch_size > 1:
            verdicts.write(self.batched)

    def _forward(self, images: list[np.ndarray]) -> np.ndarray:
        """Run the network; return the (rows, 7) DetectionOutput of all images."""
        size = (self.input_size, self.input_size)
        blob = cv2.dnn.blobFromImages(images, scalefactor=1.0, size=size, swapRB=True, crop=False)
        outputs = self.engine.infer({self.engine.spec.input_names[0]: blob})
        return np.asarray(outputs[self.engine.spec.output_names[0]]).reshape(-1, 7)

    def _forward_each(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Rows per image, from one batched forward or one forward per image."""
        if self.batched and len(images) > 1:
            rows = self._forward(images)
            image_ids = rows[:, 0].astype(np.int64)
            return [rows[image_ids == i] for i in range(len(images))]
        return [self._forward([image]) for image in images]

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return [
            self._postprocess(rows, image.shape[:2])
            for rows, image in zip(self._forward_each(images), images, strict=True)
        ]

    def _postprocess(self, rows: np.ndarray, shape: tuple[int, ...]) -> Detections:
        height, width = shape
        # Class 0 is the background label: zero-filled padding rows carry it.
        tf_class = rows[:, 1].astype(np.int64)
        known = (tf_class > 0) & (tf_class < len(self._class_map))
        rows, tf_class = rows[known], tf_class[known]
        class_id = self._class_map[tf_class]
        keep = (class_id >= 0) & (rows[:, 2] >= self.confidence) & (rows[:, 2] > 0)
        if len(self._keep):
            keep &= np.isin(class_id, self._keep)
        rows, class_id = rows[keep], class_id[keep]
        if not len(rows):
            return Detections.empty()
        scale = np.array([width, height, width, height], dtype=np.float32)
        xyxy = np.clip(rows[:, 3:7] * scale, 0, scale)
        order = np.argsort(-rows[:, 2], kind="stable")
        return to_detections(xyxy[order], rows[order, 2].astype(np.float32), class_id[order], self.nms_iou)

    def _check_batching(self) -> None:
        """Check at start that a batched forward returns what per-image forwards do.

        OpenCV's DetectionOutput tags each row with its image index; if a build of OpenCV mixes up
        images in a batch, every frame after the first would get wrong boxes, so the detector then
        falls back to one forward per frame (slower, correct) and says so.
        """
        if self.batch_size == 1:
            return
        rng = np.random.default_rng(0)
        # Random noise reliably yields low-score detections, so the comparison is not vacuous.
        images = [rng.integers(0, 256, (*CHECK_SHAPE, 3), dtype=np.uint8) for _ in range(self.batch_size)]
        singles = [self._forward([image]) for image in images]
        rows = self._forward(images)
        image_ids = rows[:, 0].astype(np.int64)
        for i, single in enumerate(singles):
            single = single[single[:, 1] > 0]
            batched = rows[(image_ids == i) & (rows[:, 1] > 0)]
            if not _same_rows(batched[:, 1:], single[:, 1:], atol=1e-3):
                self.batched = False
                self._warn_unbatched(f"for image {i} of a batch ")
                return

    def _warn_unbatched(self, which: str = "") -> None:
        logger.warning(
            "%s: OpenCV %s returned different detections %sthan for the same image alone; running one "
            "forward per frame",
            self.name,
            cv2.__version__,
            which,
        )


def _batching_key(model: Path, graph: Path, config: SSDDetectorConfig) -> str:
    """What the batching verdict depends on: this OpenCV build, the model files and the input shapes."""
    parts: list[object] = [cv2.__version__, hashlib.sha256(cv2.getBuildInformation().encode()).hexdigest()]
    for path in (model, graph):
        stat = path.stat()
        parts += [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    parts += [config.input_size, config.batch_size, CHECK_SHAPE]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


class _BatchingVerdicts:
    """The batching check's verdicts kept in ``<cache_dir>/opencv-dnn-batching.json``.

    The check costs five forwards (about 0.5 s on two cores) and its answer only changes with OpenCV
    or the model, so a later start reads it. A missing, unreadable or unwritable file only means
    the check runs again.
    """

    def __init__(self, cache_dir: Path, key: str) -> None:
        self.path = Path(cache_dir) / BATCHING_VERDICTS
        self.key = key

    def _load(self) -> dict[str, bool]:
        try:
            verdicts = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return verdicts if isinstance(verdicts, dict) else {}

    def read(self) -> bool | None:
        verdict = self._load().get(self.key)
        return verdict if isinstance(verdict, bool) else None

    def write(self, batched: bool) -> None:
        verdicts = {k: v for k, v in self._load().items() if isinstance(v, bool)}
        verdicts[self.key] = batched
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(verdicts, indent=0, sort_keys=True), encoding="utf-8")
            os.replace(partial, self.path)
        except OSError as exc:
            logger.info("batching check not cached (%s): it runs again at the next start", exc)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
