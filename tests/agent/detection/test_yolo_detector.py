"""The ultralytics YOLO backend on a tiny randomly initialised model, as .pt and as ONNX."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent._ultralytics import import_ultralytics
from agent.config import YoloDetectorConfig
from agent.detection import DetectorError, build_detector
from agent.detection.yolo import YoloDetector
from agent.types import Detections

IMGSZ = 160  # pixels; small keeps the random-weights model fast on a CPU
CONFIDENCE = 0.25
PERSON = 0


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLOv8n built from ultralytics' bundled yaml (random weights, nothing downloaded), saved as .pt.

    A random head scores every class near 1e-5; raising the person logit by 11 makes the model call
    everything a person with scores spread over (0, 1), so confidence and class filters have work to do.
    """
    import_ultralytics()
    import torch
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml", task="detect")
    network: Any = model.model  # a DetectionModel; typed by ultralytics as str | Module | None
    with torch.no_grad():
        for branch in network.model[-1].cv3:
            branch[-1].bias[PERSON] += 11.0
    path = tmp_path_factory.mktemp("yolo") / "tiny-detect.pt"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tiny_pt: Path) -> Path:
    import_ultralytics()
    from ultralytics import YOLO

    # simplify=False: onnxslim is not a dependency, and ultralytics must not try to install it.
    exported = YOLO(str(tiny_pt), task="detect").export(format="onnx", imgsz=IMGSZ, simplify=False)
    path = Path(exported)
    assert path.is_file() and path.parent == tiny_pt.parent
    return path


def _frames(sample_frames: list[np.ndarray]) -> list[np.ndarray]:
    """Four frames of the sample video and one smaller one, as from cameras of different sizes."""
    return [*sample_frames[:4], cv2.resize(sample_frames[4], (320, 240))]


def _config(model: Path, **overrides: object) -> YoloDetectorConfig:
    values: dict[str, object] = {
        "type": "yolo",
        "model": model,
        "imgsz": IMGSZ,
        "confidence": CONFIDENCE,
        "classes": [0],
    }
    values.update(overrides)
    return YoloDetectorConfig.model_validate(values)


def _check_in_bounds(results: list[Detections], frames: list[np.ndarray], classes: set[int]) -> None:
    assert len(results) == len(frames)
    assert sum(len(dets) for dets in results) > 0
    for dets, frame in zip(results, frames, strict=True):
        height, width = frame.shape[:2]
        assert dets.xyxy.dtype == np.float32 and dets.class_id.dtype == np.int64
        assert (dets.xyxy >= 0).all()
        assert (dets.xyxy[:, [0, 2]] <= width).all() and (dets.xyxy[:, [1, 3]] <= height).all()
        assert ((dets.confidence >= CONFIDENCE) & (dets.confidence <= 1)).all()
        assert set(dets.class_id.tolist()) <= classes
        assert dets.tracker_id is None


@pytest.mark.slow
def test_pt_model_detects_in_frame_coordinates(tiny_pt: Path, sample_frames: list[np.ndarray]) -> None:
    frames = _frames(sample_frames)
    with build_detector(_config(tiny_pt, batch_size=2)) as detector:
        assert isinstance(detector, YoloDetector)
        assert detector.batch_size == 2
        results = detector.detect(frames)
        assert detector.timings.batches == 3  # 5 frames in batches of at most 2
    _check_in_bounds(results, frames, {PERSON})


@pytest.mark.slow
def test_class_and_confidence_filters(tiny_pt: Path, sample_frames: list[np.ndarray]) -> None:
    frames = _frames(sample_frames)
    with build_detector(_config(tiny_pt, classes=[2, 5])) as detector:
        assert sum(len(dets) for dets in detector.detect(frames)) == 0  # the model sees only people
    with build_detector(_config(tiny_pt, classes=[])) as detector:  # empty: every class
        _check_in_bounds(detector.detect(frames), frames, {PERSON})
    with build_detector(_config(tiny_pt, confidence=0.99)) as detector:
        strict = detector.detect(frames)
    with build_detector(_config(tiny_pt)) as detector:
        loose = detector.detect(frames)
    assert sum(map(len, strict)) < sum(map(len, loose))


@pytest.mark.slow
def test_onnx_export_runs_through_the_same_backend(
    tiny_pt: Path, tiny_onnx: Path, sample_frames: list[np.ndarray]
) -> None:
    frames = _frames(sample_frames)
    with build_detector(_config(tiny_onnx)) as detector:
        onnx_results = detector.detect(frames)
    with build_detector(_config(tiny_pt)) as detector:
        pt_results = detector.detect(frames)
    _check_in_bounds(onnx_results, frames, {PERSON})
    for from_onnx, from_pt in zip(onnx_results, pt_results, strict=True):
        # The same network: the best box of each frame agrees to within a pixel.
        assert len(from_onnx) and len(from_pt)
        np.testing.assert_allclose(from_onnx.confidence[0], from_pt.confidence[0], atol=1e-3)
        np.testing.assert_allclose(from_onnx.xyxy[0], from_pt.xyxy[0], atol=1.0)


def test_ultralytics_is_kept_offline() -> None:
    import_ultralytics()
    from ultralytics.utils import checks, events

    assert checks.AUTOINSTALL is False and checks.ONLINE is False
    assert events.events.enabled is False


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    model = tmp_path / "yolov8n.pt"
    model.write_bytes(b"x")
    config = _config(model)
    model.unlink()
    with pytest.raises(DetectorError, match=r"not found.*yolov8n\.pt.*nothing is downloaded"):
        build_detector(config)


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_corrupt_model_fails_at_start(tmp_path: Path, suffix: str) -> None:
    model = tmp_path / f"broken{suffix}"
    model.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DetectorError, match=f"broken{suffix}"):
        build_detector(_config(model))


def test_engine_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    model = tmp_path / "model.engine"
    model.write_bytes(b"engine")
    with pytest.raises(DetectorError, match=r"watchword\[trt\]"):
        build_detector(_config(model))
