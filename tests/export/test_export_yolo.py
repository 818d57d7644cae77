"""YOLO export: through ultralytics' exporter, offline, validated, run by the yolo detector backend."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from engines import verify_manifest
from export.calibration import read_frames
from export.errors import CalibrationError, ExportError
from export.yolo import YoloExportConfig, export_yolo

pytest.importorskip("ultralytics")
IMGSZ = 64


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection or DNS lookup, so a test proves the code path stays offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def yolo_export(tiny_yolo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("yolo-export")
    export_yolo(YoloExportConfig(weights=tiny_yolo, out=out, imgsz=IMGSZ))
    return out


def _match(a: object, b: object) -> float:
    """Share of ``a``'s detections with a same-class box in ``b`` at IoU >= 0.95 and a score within 1e-3."""
    from agent.types import Detections

    assert isinstance(a, Detections) and isinstance(b, Detections)
    if len(a) == 0:
        return 1.0 if len(b) == 0 else 0.0
    matched = 0
    for i in range(len(a)):
        x1 = np.maximum(a.xyxy[i, 0], b.xyxy[:, 0])
        y1 = np.maximum(a.xyxy[i, 1], b.xyxy[:, 1])
        x2 = np.minimum(a.xyxy[i, 2], b.xyxy[:, 2])
        y2 = np.minimum(a.xyxy[i, 3], b.xyxy[:, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        iou = inter / (a.area[i] + b.area - inter + 1e-9)
        ok = (iou >= 0.95) & (b.class_id == a.class_id[i]) & (np.abs(b.confidence - a.confidence[i]) < 1e-3)
        matched += bool(ok.any())
    return matched / len(a)


def test_export_is_offline_validated_and_described(tiny_yolo: Path, tmp_path: Path, no_network: None) -> None:
    result = export_yolo(YoloExportConfig(weights=tiny_yolo, out=tmp_path / "out", imgsz=IMGSZ, max_batch=4))
    manifest = verify_manifest(tmp_path / "out")
    assert set(manifest.files) == {"tiny-yolo.onnx", "model.json"}
    assert manifest.kind == "yolo" and manifest.source["sha256"] and manifest.opset == 17
    parity = result.parity[0]
    assert parity.metrics["max_box_px"] <= 0.05 and parity.metrics["max_score_abs"] <= 1e-3
    assert parity.metrics["scored_anchors"] > 0
    # Through the detector's own decode and NMS, the graph reports the torch model's boxes.
    assert parity.metrics["decoded_boxes"] == parity.metrics["decoded_boxes_reference"] > 0
    assert parity.metrics["decoded_min_iou"] >= 0.99
    graph = manifest.graphs["detector"]
    assert (
        graph["inputs"][0]["shape"] == ["batch", 3, IMGSZ, IMGSZ] and graph["outputs"][0]["name"] == "output0"
    )


def test_the_exported_graph_runs_through_the_yolo_detector_backend(
    tiny_yolo: Path, yolo_export: Path, sample_video: Path
) -> None:
    from agent.detection import build_detector
    from agent.detection.config import YoloDetectorConfig

    frames = read_frames(sample_video, 3)
    results = {}
    for model in (tiny_yolo, yolo_export / "tiny-yolo.onnx"):
        detector = build_detector(
            YoloDetectorConfig(type="yolo", model=model, imgsz=IMGSZ, confidence=0.25, classes=[])
        )
        try:
            results[model.suffix] = detector.detect(frames)
        finally:
            detector.close()
    assert all(len(d) > 0 for d in results[".pt"]), "the tiny model should report boxes"
    for torch_dets, onnx_dets in zip(results[".pt"], results[".onnx"], strict=True):
        assert _match(torch_dets, onnx_dets) >= 0.95 and _match(onnx_dets, torch_dets) >= 0.95


def test_yolo_detector_refuses_a_tampered_export(yolo_export: Path, tmp_path: Path) -> None:
    import shutil

    from agent.detection import DetectorError, build_detector
    from agent.detection.config import YoloDetectorConfig

    copy = tmp_path / "export"
    shutil.copytree(yolo_export, copy)
    model = copy / "tiny-yolo.onnx"
    with model.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(DetectorError, match=r"detector.model: (.|\n)*tiny-yolo\.onnx has \d+ bytes"):
        build_detector(YoloDetectorConfig(type="yolo", model=model, imgsz=IMGSZ))


def test_int8_export_is_calibrated_on_frames(tiny_yolo: Path, tmp_path: Path, sample_video: Path) -> None:
    result = export_yolo(
        YoloExportConfig(
            weights=tiny_yolo,
            out=tmp_path / "int8",
            imgsz=IMGSZ,
            int8=True,
            calibration=sample_video,
            calibration_frames=12,
            gate_classes="all",  # random weights: the gate compares the boxes of every class
        )
    )
    manifest = verify_manifest(tmp_path / "int8")
    assert (
        manifest.graphs["detector"]["precision"] == "int8" and manifest.extra["quantization"]["samples"] > 0
    )
    assert result.parity[0].precision == "int8"
    import onnx

    model = onnx.load(str(tmp_path / "int8" / "tiny-yolo.onnx"))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert {p.key for p in model.metadata_props} >= {
        "names",
        "stride",
        "imgsz",
    }  # the detector backend reads these


def test_bad_requests_fail_with_typed_errors(tiny_yolo: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="INT8 needs calibration"):
        export_yolo(YoloExportConfig(weights=tiny_yolo, out=tmp_path / "x", int8=True))
    with pytest.raises(ExportError, match="one of --half and --int8"):
        export_yolo(
            YoloExportConfig(
                weights=tiny_yolo, out=tmp_path / "x", int8=True, half=True, calibration=tmp_path
            )
        )
    with pytest.raises(ExportError, match="multiple of 32"):
        export_yolo(YoloExportConfig(weights=tiny_yolo, out=tmp_path / "x", imgsz=100))
    with pytest.raises(ExportError, match=r"existing ultralytics \.pt"):
        export_yolo(YoloExportConfig(weights=tmp_path / "missing.pt", out=tmp_path / "x"))
