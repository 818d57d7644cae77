"""The SSD is converted to ONNX once, on the first start, into ``<state_dir>/models/ssd-mobilenet``.

Later starts read the export through its manifest; a damaged export or changed source files are
converted again; a folder that cannot be written stops the start with a line naming it. The
``opencv-dnn`` engine is still there for who asks, and says plainly that it needs OpenCV 4.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.detection import DetectorError, build_detector
from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd import MODEL_DIR_NAME, OPTIMIZED_CACHE, SSDMobileNetDetector
from engines import read_manifest
from export.errors import SourceModelError
from export.ssd import ONNX_FILE, opencv_reads_tensorflow, packaged_ssd_files


@pytest.fixture
def packaged() -> tuple[Path, Path]:
    try:
        return packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))


def _config(**values: object) -> SSDDetectorConfig:
    return SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", "batch_size": 2, **values})


def test_the_first_start_converts_and_the_next_reads_the_export(
    packaged: tuple[Path, Path],
    tmp_path: Path,
    sample_frames: list[np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    with caplog.at_level(logging.INFO), build_detector(_config(), state) as first:
        assert isinstance(first, SSDMobileNetDetector)
        # the first start optimises the graph without saving it (a save costs twice the optimisation)
        assert not first.engine.optimized_from_cache  # type: ignore[attr-defined]
        found = first.detect(sample_frames[:2])
        assert not list((state / "models" / MODEL_DIR_NAME / OPTIMIZED_CACHE).glob("*.ort"))
    export = state / "models" / MODEL_DIR_NAME
    assert len(list((export / OPTIMIZED_CACHE).glob("*.ort"))) == 1  # saved as the detector closed
    assert sum("saved the optimised graph" in r.getMessage() for r in caplog.records) == 1
    assert not any(".partial" in r.getMessage() for r in caplog.records if "saved" in r.getMessage())
    manifest = read_manifest(export)
    assert manifest.kind == "ssd" and ONNX_FILE in manifest.files
    assert manifest.parity and manifest.parity[0]["frames_mismatched"] == 0
    assert sum("no converted SSD" in r.getMessage() for r in caplog.records) == 1
    made = (export / ONNX_FILE).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO), build_detector(_config(), state) as second:
        assert second.engine.optimized_from_cache  # type: ignore[attr-defined]
        again = second.detect(sample_frames[:2])
    assert not any("convert" in r.getMessage() for r in caplog.records)
    assert (export / ONNX_FILE).stat().st_mtime_ns == made
    for a, b in zip(found, again, strict=True):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)


def test_a_damaged_export_is_converted_again(
    packaged: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    build_detector(_config(), state).close()
    onnx_file = state / "models" / MODEL_DIR_NAME / ONNX_FILE
    with open(onnx_file, "r+b") as handle:
        handle.truncate(onnx_file.stat().st_size // 2)
    with caplog.at_level(logging.WARNING), build_detector(_config(), state) as detector:
        assert len(detector.detect([np.zeros((240, 320, 3), np.uint8)])) == 1
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert read_manifest(onnx_file.parent).files[ONNX_FILE].bytes == onnx_file.stat().st_size


def test_changed_source_files_are_converted_again(packaged: tuple[Path, Path], tmp_path: Path) -> None:
    _model, graph = packaged
    state = tmp_path / "state"
    build_detector(_config(), state).close()
    first_key = read_manifest(state / "models" / MODEL_DIR_NAME).extra["source_key"]
    copy = Path(shutil.copy(graph, tmp_path / graph.name))
    build_detector(_config(graph=copy), state).close()
    manifest = read_manifest(state / "models" / MODEL_DIR_NAME)
    assert manifest.extra["source_key"] != first_key and manifest.source["graph"] == str(copy)


def test_a_models_folder_that_cannot_be_written_stops_the_start_naming_it(
    packaged: tuple[Path, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    with pytest.raises(DetectorError, match=r"ssd-mobilenet: .*state/models"):
        build_detector(_config(), blocker)


def test_the_opencv_engine_says_it_needs_opencv_4(
    packaged: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenCV 5 is simulated by its version string: the engine must refuse before reading anything."""
    monkeypatch.setattr(cv2, "__version__", "5.1.0")
    with pytest.raises(
        DetectorError, match=r"opencv-dnn reads TensorFlow graphs only with OpenCV 4.*5\.1\.0"
    ):
        build_detector(_config(engine={"type": "opencv-dnn"}))


@pytest.mark.skipif(not opencv_reads_tensorflow(), reason="OpenCV 5 has no TensorFlow importer")
def test_the_opencv_engine_finds_the_people_the_onnx_detector_finds(
    packaged: tuple[Path, Path], tmp_path: Path, sample_frames: list[np.ndarray]
) -> None:
    frames = sample_frames[::10]
    with build_detector(_config(engine={"type": "opencv-dnn"}), tmp_path) as opencv:
        assert opencv.engine.name.startswith("opencv-dnn(")
        expected = opencv.detect(frames)
    with build_detector(_config(), tmp_path) as onnx:
        got = onnx.detect(frames)
    assert sum(len(d) for d in expected) >= 20
    for theirs, ours in zip(expected, got, strict=True):
        assert len(theirs) == len(ours)
        np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=0.5)
        np.testing.assert_allclose(ours.confidence, theirs.confidence, atol=1e-3)
