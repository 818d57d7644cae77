"""Four cameras on one YOLO detector: cross-camera batches, inference on its own thread, and each
camera's frames reaching its own tracker in order with the results a single camera would get."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent._ultralytics import import_ultralytics
from agent.config import AgentConfig
from agent.detection import Detector, build_detector
from agent.detection.base import PreparedBatch
from agent.detection.config import YoloDetectorConfig
from agent.pipeline import Pipeline
from agent.types import Detections, Frame, TrackEvent

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="the sample video (Debian opencv-doc) is missing")
IMGSZ = 160  # pixels: small keeps the random-weights model fast on a CPU
FRAMES = 12  # per camera
CAMERAS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLOv8n from ultralytics' yaml (random weights, nothing downloaded), its person logit raised
    so that every frame has boxes (as in the detector tests), exported with a dynamic batch axis."""
    import_ultralytics()
    import torch
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml", task="detect")
    network: Any = model.model
    with torch.no_grad():
        for branch in network.model[-1].cv3:
            branch[-1].bias[0] += 11.0
    path = tmp_path_factory.mktemp("yolo-dynamic") / "tiny-detect.pt"
    model.save(path)
    exported = YOLO(str(path), task="detect").export(
        format="onnx", imgsz=IMGSZ, simplify=False, dynamic=True, verbose=False
    )
    return Path(exported)


class Recorder(Detector):
    """The real YOLO detector, with each batch's images and the thread its inference ran on noted."""

    def __init__(self, inner: Detector) -> None:
        super().__init__(f"recorded {inner.name}", inner.engine, inner.batch_size)
        self.inner = inner
        self.batches: list[list[np.ndarray]] = []
        self.infer_threads: set[str] = set()

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return self.inner.detect(images)

    def _prepare(self, images: list[np.ndarray]) -> PreparedBatch:
        self.batches.append(images)
        return self.inner.prepare(images)

    def _infer_prepared(self, batch: PreparedBatch) -> Any:
        self.infer_threads.add(threading.current_thread().name)
        return self.inner.infer(batch)

    def _finish(self, batch: PreparedBatch, raw: Any) -> list[Detections]:
        return self.inner.finish(batch, raw)


Seen = dict[str, list[tuple[int, list[int], np.ndarray]]]  # per camera: index, track ids, boxes


def _run(
    tmp_path: Path, detector: Detector, cameras: tuple[str, ...]
) -> tuple[Pipeline, Seen, dict[int, str]]:
    """Run ``cameras`` (the sample video each) for FRAMES frames; what each camera's frames got, and
    the camera of each analysed image (by object id)."""
    config = AgentConfig.model_validate(
        {
            "state_dir": str(tmp_path),
            "cameras": [{"id": c, "uri": str(SAMPLE), "max_width": 320, "max_height": 240} for c in cameras],
            "tracker": {"type": "bytetrack"},
        }
    )
    seen: Seen = {c: [] for c in cameras}
    images: dict[int, str] = {}

    def on_frame(frame: Frame, tracks: Detections, events: list[TrackEvent]) -> None:
        images[id(frame.image)] = frame.camera_id
        ids = tracks.tracker_id.tolist() if tracks.tracker_id is not None else []
        seen[frame.camera_id].append((frame.index, ids, tracks.xyxy.copy()))

    pipeline = Pipeline(config, detector=detector, max_frames=FRAMES, on_frame=on_frame)
    summary = pipeline.run()
    assert summary.frames == FRAMES * len(cameras)
    return pipeline, seen, images


def test_four_cameras_are_batched_and_each_keeps_its_order_and_tracker(
    dynamic_onnx: Path, tmp_path: Path
) -> None:
    config = YoloDetectorConfig.model_validate(
        {"type": "yolo", "model": dynamic_onnx, "imgsz": IMGSZ, "confidence": 0.25, "classes": [0],
         "batch_size": 4, "engine": {"type": "onnxruntime", "providers": ["cpu"]}}
    )  # fmt: skip
    with build_detector(config) as yolo:
        recorder = Recorder(yolo)
        pipeline, seen, camera_of = _run(tmp_path / "four", recorder, CAMERAS)
        _, alone, _ = _run(tmp_path / "one", yolo, ("a",))

    # frames of several cameras share batches, up to the detector's batch of 4
    batch_cameras = [[camera_of[id(image)] for image in batch] for batch in recorder.batches]
    assert max(len(batch) for batch in batch_cameras) == 4, batch_cameras
    assert any(len(set(batch)) == 4 for batch in batch_cameras), batch_cameras
    # inference ran on its own thread, never on the loop's
    assert recorder.infer_threads and all(
        name.startswith("watchword-infer") for name in recorder.infer_threads
    )
    # one tracker per camera, each fed its own camera's frames in order: each camera's tracks are the
    # ones the same video gets when it is the only camera
    assert len({id(tracker) for tracker in pipeline.trackers.values()}) == len(CAMERAS)
    reference = alone["a"]
    assert sum(len(ids) for _, ids, _ in reference) > 0
    for camera in CAMERAS:
        rows = seen[camera]
        assert [index for index, _, _ in rows] == sorted(index for index, _, _ in rows)
        assert len(rows) == FRAMES
        for (index, ids, boxes), (ref_index, ref_ids, ref_boxes) in zip(rows, reference, strict=True):
            assert index == ref_index
            assert ids == ref_ids, camera
            np.testing.assert_allclose(boxes, ref_boxes, atol=0.5)
