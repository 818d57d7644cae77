"""The detector built on a thread while the agent starts: its result and errors reach the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.detection import DetectorError
from agent.detection.config import SSDDetectorConfig
from agent.detection.loader import DetectorLoader
from export.errors import SourceModelError
from export.ssd import packaged_ssd_files


@pytest.fixture(autouse=True)
def _packaged_model() -> None:
    try:
        packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))


def _config(**values: object) -> SSDDetectorConfig:
    return SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", "batch_size": 2, **values})


def test_the_build_runs_on_its_own_thread_and_hands_over_a_working_detector(
    sample_frames: list[np.ndarray], tmp_path: Path
) -> None:
    loader = DetectorLoader(_config())  # converted into the user cache once
    assert loader._thread.name == "detector-load" and loader._thread is not threading.current_thread()
    detector = loader.result()
    assert loader.result() is detector
    assert sum(len(d) for d in detector.detect(sample_frames[:2])) > 0
    loader.close()
    with pytest.raises(DetectorError, match="closed"):
        detector.detect(sample_frames[:1])
    loader.close()  # twice is harmless


def test_a_corrupt_model_fails_in_result_not_in_the_constructor(tmp_path: Path) -> None:
    model = tmp_path / "broken.pb"
    model.write_bytes(b"not a tensorflow graph" * 50)
    loader = DetectorLoader(_config(model=model))  # returns at once: the start goes on meanwhile
    with pytest.raises(DetectorError, match=r"broken\.pb"):
        loader.result()
    with pytest.raises(DetectorError, match=r"broken\.pb"):  # asked again, same answer
        loader.result()
    loader.close()


def test_close_during_the_build_waits_for_it_and_closes_the_detector(tmp_path: Path) -> None:
    loader = DetectorLoader(_config())  # converted into the user cache once
    loader.close()  # right away: the build is still reading the model
    assert not loader._thread.is_alive()
    with pytest.raises(DetectorError, match="closed"):
        loader.result().detect([np.zeros((64, 64, 3), np.uint8)])
