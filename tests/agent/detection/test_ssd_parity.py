"""The demo's SSD converted to ONNX finds the people OpenCV 4's DNN module found, with OpenCV 4 or 5.

``export/reference/ssd_opencv4_vtest.json`` holds what OpenCV 4.14's DNN module found on 24 frames of
``vtest.avi`` (recorded once with ``python -m export.ssd``), so the comparison still means something
where OpenCV 5, which cannot read the TensorFlow graph, is installed. Where OpenCV 4 is installed the
record is checked against it too, and the detector is compared with it live.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.detection import build_detector
from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd import SSDMobileNetDetector
from export.ssd import (
    MAX_SCORE_ABS,
    MIN_IOU,
    PARITY_MIN_SCORE,
    compare_people,
    load_recorded,
    opencv_people,
    opencv_reads_tensorflow,
    packaged_ssd_files,
    sample_frames,
)
from tests.fixtures.offline import SAMPLE_VIDEO

needs_opencv4 = pytest.mark.skipif(
    not opencv_reads_tensorflow(), reason="OpenCV 5 has no TensorFlow importer: the record stands in for it"
)


@pytest.fixture(scope="module")
def recorded() -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    indices, people, header = load_recorded()
    assert header["opencv"].startswith("4."), "the record must come from OpenCV 4"
    return indices, people, sample_frames(indices)


@pytest.fixture(scope="module")
def onnx_detector(tmp_path_factory: pytest.TempPathFactory) -> SSDMobileNetDetector:
    state = tmp_path_factory.mktemp("ssd-state")
    # nms_iou 1: no suppression after the model's own, which is what OpenCV's DetectionOutput returned
    config = SSDDetectorConfig.model_validate(
        {"type": "ssd-mobilenet", "confidence": PARITY_MIN_SCORE, "nms_iou": 1.0}
    )
    detector = build_detector(config, state)
    assert isinstance(detector, SSDMobileNetDetector)
    return detector


def _clipped(people: list[np.ndarray]) -> list[np.ndarray]:
    """OpenCV's rows with the boxes clipped to the frame, as the detector returns them."""
    return [np.column_stack([rows[:, :1], np.clip(rows[:, 1:5], 0, 1)]) for rows in people]


def _normalised(detector: SSDMobileNetDetector, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The detector's people per frame as ``score, x1, y1, x2, y2`` normalised rows, best first."""
    rows = []
    for frame, found in zip(frames, detector.detect(frames), strict=True):
        height, width = frame.shape[:2]
        scale = np.array([width, height, width, height], np.float32)
        rows.append(np.column_stack([found.confidence, found.xyxy / scale]))
    return rows


def test_the_onnx_detector_finds_the_recorded_opencv4_people(
    recorded: tuple[list[int], list[np.ndarray], list[np.ndarray]], onnx_detector: SSDMobileNetDetector
) -> None:
    indices, expected, frames = recorded
    assert len(indices) >= 20 and sum(len(p) for p in expected) >= 100
    got = _normalised(onnx_detector, frames)
    metrics = compare_people(_clipped(expected), got)
    assert metrics["frames_mismatched"] == 0, metrics
    assert metrics["min_iou"] >= MIN_IOU, metrics
    assert metrics["max_score_abs"] <= MAX_SCORE_ABS, metrics


def test_a_detector_that_loses_a_person_fails_the_comparison(
    recorded: tuple[list[int], list[np.ndarray], list[np.ndarray]],
) -> None:
    _indices, expected, _frames = recorded
    one_less = [rows[1:] if i == 3 else rows for i, rows in enumerate(expected)]
    assert compare_people(expected, one_less)["frames_mismatched"] == 1
    shifted = [rows + np.array([0, 0.01, 0, 0.01, 0], np.float32) for rows in expected]
    assert compare_people(expected, shifted)["min_iou"] < MIN_IOU


@needs_opencv4
def test_the_record_is_what_this_opencv4_finds(
    recorded: tuple[list[int], list[np.ndarray], list[np.ndarray]],
) -> None:
    _indices, expected, frames = recorded
    model, graph = packaged_ssd_files()
    live = opencv_people(model, graph, frames, 300, PARITY_MIN_SCORE)
    metrics = compare_people(expected, live)
    assert metrics["frames_mismatched"] == 0 and metrics["min_iou"] > 0.9999, metrics


@needs_opencv4
def test_the_onnx_detector_matches_opencv4_live_on_other_frames(onnx_detector: SSDMobileNetDetector) -> None:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {SAMPLE_VIDEO}")
    frames = sample_frames(list(range(5, 790, 37)))  # 22 frames the record does not hold
    model, graph = packaged_ssd_files()
    expected = _clipped(opencv_people(model, graph, frames, 300, PARITY_MIN_SCORE))
    metrics = compare_people(expected, _normalised(onnx_detector, frames))
    assert metrics["people"] >= 100
    assert metrics["frames_mismatched"] == 0 and metrics["min_iou"] >= MIN_IOU, metrics
    assert metrics["max_score_abs"] <= MAX_SCORE_ABS, metrics
