"""MoveNet Lightning keypoints for many person boxes at once, through ``engines/`` (onnxruntime).

Each box is padded, squared around its centre (MoveNet expects an undistorted person) and resized to
192x192 RGB; all crops of a frame batch go through one engine call (the exported graph scans its
batch axis). Keypoints come back in the frame's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.pose.config import PoseConfig
from engines import Engine, ManifestError, create_engine, verify_manifest

log = logging.getLogger(__name__)

INPUT_SIZE = 192
KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
"""COCO keypoint order of MoveNet's 17 outputs."""
SKELETON = (
    (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12), (11, 12),
    (11, 13), (13, 15), (12, 14), (14, 16), (0, 5), (0, 6),
)  # fmt: skip
"""Keypoint pairs drawn as limbs on evidence frames."""


class PoseModelError(RuntimeError):
    """The pose model cannot be found, exported or loaded; the message says what to do."""


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of N people: ``points`` (N, 17, 3) as x, y in frame pixels and a score in [0, 1]."""

    points: np.ndarray

    def __post_init__(self) -> None:
        if self.points.ndim != 3 or self.points.shape[1:] != (17, 3):
            raise ValueError(f"Keypoints.points must be (N, 17, 3), got {self.points.shape}")

    def __len__(self) -> int:
        return len(self.points)


def square_crop(
    image: np.ndarray, box: Sequence[float], padding: float
) -> tuple[np.ndarray, float, float, float]:
    """The padded square around a box, resized to 192x192 RGB, and its (x0, y0, side) in frame pixels.

    Parts of the square outside the frame are black, so the person is never stretched.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * padding)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    size = max(round(side), 1)
    canvas = np.zeros((size, size, 3), np.uint8)
    height, width = image.shape[:2]
    left, top = round(x0), round(y0)
    sx1, sy1 = max(left, 0), max(top, 0)
    sx2, sy2 = min(left + size, width), min(top + size, height)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - top : sy2 - top, sx1 - left : sx2 - left] = image[sy1:sy2, sx1:sx2]
    resized = cv2.resize(canvas, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(resized[:, :, ::-1]), float(left), float(top), float(size)


DEFAULT_MODEL_DIR = Path("data/models/pose")


def ensure_pose_model(config: PoseConfig, directory: Path | None = None) -> Path:
    """The verified model directory (``directory``, else ``config.model_dir``, else the default);
    converts the packaged MoveNet there first when it has no manifest and ``export_if_missing`` is
    set (a one-time step of a few seconds, logged)."""
    directory = Path(directory or config.model_dir or DEFAULT_MODEL_DIR)
    try:
        verify_manifest(directory, trust_stamp=True)
        return directory
    except ManifestError as exc:
        if not config.export_if_missing:
            raise PoseModelError(
                f"pose.model_dir: {exc}; run `watchword export pose --out {directory}`"
            ) from exc
    log.warning(
        "pose: no exported MoveNet in %s; converting the packaged movenet_lightning.tflite to ONNX there "
        "(once, a few seconds)",
        directory,
    )
    try:
        from export.errors import ExportError
        from export.pose import PoseExportConfig, export_pose
    except ImportError as exc:
        raise PoseModelError(f"cannot convert MoveNet here: {exc}") from exc
    reference = "litert"
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        # an edge install without the export extra still converts; the manifest says it was not compared
        reference = "none"
    try:
        result = export_pose(PoseExportConfig(out=directory, reference=reference))
    except ExportError as exc:
        raise PoseModelError(f"converting MoveNet failed: {exc}") from exc
    for parity in result.parity:
        log.info("pose: converted MoveNet, parity against LiteRT %s", parity.metrics)
    return directory


class PoseEstimator:
    """Runs the exported MoveNet on person boxes, ``max_batch`` crops per engine call."""

    def __init__(
        self, config: PoseConfig, engine: Engine | None = None, model_dir: Path | None = None
    ) -> None:
        self.config = config
        if engine is None:
            directory = ensure_pose_model(config, model_dir)
            manifest = verify_manifest(directory, trust_stamp=True)
            engine = create_engine(
                "onnxruntime",
                directory / manifest.graph_file("pose"),
                providers=config.providers,
                intra_op_threads=config.intra_op_threads,
                check_file=False,  # verify_manifest checked its sha256: `onnx` is not imported
                spinning=False,  # a few crops now and then: no busy-waiting beside the detector
                optimized_cache_dir=directory / ".onnxruntime",
            )
            self.version = manifest.files[manifest.graph_file("pose")].sha256[:16]
        else:
            self.version = "injected"
        self.engine = engine
        self.calls = 0
        self.crops = 0

    def estimate(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> Keypoints:
        """Keypoints for each (frame image, xyxy box), in the frame's pixels."""
        if not regions:
            return Keypoints(np.zeros((0, 17, 3), np.float32))
        crops, frames = [], []
        for image, box in regions:
            crop, x0, y0, side = square_crop(image, box, self.config.crop_padding)
            crops.append(crop)
            frames.append((x0, y0, side))
        outputs = []
        step = self.config.max_batch
        for start in range(0, len(crops), step):
            batch = np.stack(crops[start : start + step])
            outputs.append(self.engine.infer({"image": batch})["keypoints"].reshape(len(batch), 17, 3))
            self.calls += 1
        self.crops += len(crops)
        raw = np.concatenate(outputs)
        geometry = np.asarray(frames, np.float32)  # (N, 3): x0, y0, side
        points = np.empty_like(raw)
        points[..., 0] = geometry[:, None, 0] + raw[..., 1] * geometry[:, None, 2]
        points[..., 1] = geometry[:, None, 1] + raw[..., 0] * geometry[:, None, 2]
        points[..., 2] = raw[..., 2]
        return Keypoints(points.astype(np.float32))

    def close(self) -> None:
        self.engine.close()
