"""The YOLO detector on a tiny randomly initialised model: .pt on torch, ONNX on onnxruntime, and
box parity with ultralytics' own predictor on the same ONNX file."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent._ultralytics import import_ultralytics
from agent.detection import DetectorError, build_detector
from agent.detection.config import YoloDetectorConfig
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
        assert detector.timings.calls == 3  # 5 frames in batches of at most 2
        assert detector.frames == 5 and detector.engine.kind == "torch"
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


def test_engine_file_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    model = tmp_path / "model.engine"
    model.write_bytes(b"engine")
    with pytest.raises(DetectorError, match=r"watchword\[trt\]"):
        build_detector(_config(model))


@pytest.fixture(scope="module")
def static_onnx(tiny_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported with a fixed (1, 3, IMGSZ, IMGSZ) input, so that ultralytics' predictor
    letterboxes to the same square input as the detector (with a dynamic graph it pads to a rectangle)."""
    import shutil

    import_ultralytics()
    from ultralytics import YOLO

    copy = tmp_path_factory.mktemp("static") / "tiny-static.pt"
    shutil.copyfile(tiny_pt, copy)
    exported = YOLO(str(copy), task="detect").export(
        format="onnx", imgsz=IMGSZ, simplify=False, dynamic=False, batch=1
    )
    return Path(exported)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@pytest.mark.slow
@pytest.mark.parametrize(("confidence", "iou", "classes"), [(0.25, 0.7, [0]), (0.5, 0.45, None)])
def test_boxes_match_ultralytics_on_the_same_onnx_file(
    static_onnx: Path,
    sample_frames: list[np.ndarray],
    confidence: float,
    iou: float,
    classes: list[int] | None,
) -> None:
    """Same graph, frames and thresholds: same number of boxes, each with IoU >= 0.99 to its match."""
    import_ultralytics()
    from ultralytics import YOLO

    frames = [*_frames(sample_frames), cv2.resize(sample_frames[5], (200, 400))]
    reference = YOLO(str(static_onnx), task="detect")
    config = _config(static_onnx, confidence=confidence, iou=iou, classes=classes or [])
    with build_detector(config) as detector:
        assert detector.engine.kind == "onnxruntime"
        ours = detector.detect(frames)
    compared = 0
    for frame, found in zip(frames, ours, strict=True):
        (result,) = reference.predict(  # a list of Results
            frame, imgsz=IMGSZ, conf=confidence, iou=iou, classes=classes, verbose=False, save=False
        )
        boxes: Any = getattr(result, "boxes", None)
        assert boxes is not None
        boxes = boxes.cpu().numpy()
        assert len(found) == len(boxes), f"{len(found)} boxes, ultralytics found {len(boxes)}"
        unmatched = list(range(len(found)))
        for box, score, cls in zip(boxes.xyxy, boxes.conf, boxes.cls, strict=True):
            # A random head yields near-duplicate boxes: match on score and class first, then IoU.
            same = [i for i in unmatched if abs(float(found.confidence[i]) - float(score)) < 1e-3]
            same = [i for i in same if found.class_id[i] == int(cls)]
            assert same, f"no box with score {score:.4f} and class {int(cls)}"
            best = max(same, key=lambda i: _iou(found.xyxy[i], box))
            assert _iou(found.xyxy[best], box) >= 0.99
            unmatched.remove(best)
            compared += 1
    assert compared >= 10, "too few boxes for the comparison to mean anything"


@pytest.mark.slow
def test_cuda_or_tensorrt_missing_fails_at_start_unless_cpu_fallback_is_allowed(
    tiny_onnx: Path, sample_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the refusal needs one without it (bench/gpu_check.sh covers it)")
    cuda = {"type": "onnxruntime", "providers": ["cuda", "cpu"]}
    with pytest.raises(DetectorError, match=r"lacks \['cuda'\].*onnxruntime-gpu.*allow_cpu_fallback"):
        build_detector(_config(tiny_onnx, engine=cuda))
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(DetectorError, match=r"tensorrt.*watchword\[trt\]"):
            build_detector(_config(tiny_onnx, engine={"type": "tensorrt"}))
    caplog.set_level(logging.INFO)
    for engine in ({**cuda, "allow_cpu_fallback": True}, {"type": "tensorrt", "allow_cpu_fallback": True}):
        with build_detector(_config(tiny_onnx, engine=engine)) as detector:
            health = detector.health()
            assert health["status"] == "degraded" and "allow_cpu_fallback" in health["reason"]
            assert sum(map(len, detector.detect(_frames(sample_frames)))) > 0
    assert any(r.levelno == logging.WARNING and "DEGRADED" in r.getMessage() for r in caplog.records)
