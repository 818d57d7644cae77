"""The opencv-dnn SSD's batching check runs once per OpenCV build and model; later starts read its verdict."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd_opencv import BATCHING_VERDICTS, OpenCvSSDDetector
from export.errors import SourceModelError
from export.ssd import opencv_reads_tensorflow, packaged_ssd_files

pytestmark = pytest.mark.skipif(
    not opencv_reads_tensorflow(),
    reason="the opencv-dnn engine needs OpenCV 4 (OpenCV 5 has no TensorFlow importer)",
)

CHECK_FORWARDS = 5  # four images alone, then the four in one batch


@pytest.fixture
def graph_copy(tmp_path: Path) -> Path:
    """The packaged text graph copied where a test may touch it (the model stays the packaged one)."""
    try:
        _model, graph = packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))
    return Path(shutil.copy(graph, tmp_path / graph.name))


def _build(graph: Path, cache_dir: Path | None, batch_size: int = 4) -> OpenCvSSDDetector:
    config = {
        "type": "ssd-mobilenet",
        "graph": graph,
        "batch_size": batch_size,
        "engine": {"type": "opencv-dnn"},
    }
    return OpenCvSSDDetector(SSDDetectorConfig.model_validate(config), cache_dir)


def test_second_start_reads_the_verdict_instead_of_checking(graph_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with _build(graph_copy, cache) as first:
        assert first.timings.calls == CHECK_FORWARDS and first.batched
    assert list(json.loads((cache / BATCHING_VERDICTS).read_text()).values()) == [True]
    with _build(graph_copy, cache) as second:
        assert second.timings.calls == 0, "the check ran again although its verdict was kept"
        assert second.batched


def test_a_kept_negative_verdict_means_one_forward_per_frame(
    graph_copy: Path, tmp_path: Path, sample_frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    _build(graph_copy, cache).close()
    verdicts = cache / BATCHING_VERDICTS
    verdicts.write_text(json.dumps(dict.fromkeys(json.loads(verdicts.read_text()), False)))
    with caplog.at_level(logging.WARNING), _build(graph_copy, cache) as detector:
        assert not detector.batched
        assert "one forward per frame" in caplog.text
        calls = detector.timings.calls
        assert len(detector.detect(sample_frames[:4])) == 4
        assert detector.timings.calls - calls == 4


def test_a_changed_model_file_is_checked_again(graph_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _build(graph_copy, cache).close()
    stat = graph_copy.stat()
    os.utime(graph_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with _build(graph_copy, cache) as detector:
        assert detector.timings.calls == CHECK_FORWARDS
    assert len(json.loads((cache / BATCHING_VERDICTS).read_text())) == 2


@pytest.mark.parametrize("damage", ["garbage", "not-a-directory"])
def test_a_broken_cache_only_means_the_check_runs(graph_copy: Path, tmp_path: Path, damage: str) -> None:
    if damage == "garbage":
        cache = tmp_path / "cache"
        cache.mkdir()
        (cache / BATCHING_VERDICTS).write_bytes(b"\x00{not json")
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        cache = blocker / "cache"  # cannot be created: its parent is a file
    with _build(graph_copy, cache) as detector:
        assert detector.batched and detector.timings.calls == CHECK_FORWARDS
    with _build(graph_copy, cache) as detector:
        assert detector.batched
        # the garbage was replaced by the verdict; an impossible directory keeps the check running
        assert detector.timings.calls == (0 if damage == "garbage" else CHECK_FORWARDS)


def test_no_cache_directory_checks_every_time_and_batch_one_never_checks(graph_copy: Path) -> None:
    with _build(graph_copy, None) as detector:
        assert detector.timings.calls == CHECK_FORWARDS
    with _build(graph_copy, None, batch_size=1) as detector:
        assert detector.timings.calls == 0
