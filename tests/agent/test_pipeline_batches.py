"""How the runner batches frames for the detector: a camera's first frame goes alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config import AgentConfig
from agent.detection import Detector, DetectorError, build_detector
from agent.detection.config import SSDDetectorConfig
from agent.pipeline import Pipeline
from agent.types import Detections

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="the sample video (Debian opencv-doc) is missing")


class BatchRecorder(Detector):
    """The real SSD, with the size of every batch the runner hands it written down."""

    def __init__(self, inner: Detector) -> None:
        super().__init__(f"recorded {inner.name}", inner.engine, inner.batch_size)
        self.inner = inner
        self.batches: list[list[int]] = []  # per batch, each frame's width (it tells the camera)

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        self.batches.append([image.shape[1] for image in images])
        return self.inner.detect(images)


def test_first_frame_of_each_camera_is_detected_without_its_backlog(tmp_path: Path) -> None:
    try:
        ssd = build_detector(SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", "batch_size": 4}))
    except DetectorError as exc:
        pytest.skip(str(exc))
    recorder = BatchRecorder(ssd)
    config = AgentConfig.model_validate(
        {
            "state_dir": str(tmp_path),
            "cameras": [
                {"id": "a", "uri": str(SAMPLE), "max_width": 320, "max_height": 240},
                {"id": "b", "uri": str(SAMPLE), "max_width": 160, "max_height": 120},
            ],
        }
    )
    pipeline = Pipeline(config, detector=recorder, max_frames=12)
    summary = pipeline.run()
    ssd.close()
    assert summary.frames == 24
    # Both files queue frames while the runner starts; each camera's first batch still holds only
    # its first frame, and the backlog afterwards goes in full batches.
    for width in (320, 160):
        first = next(batch for batch in recorder.batches if width in batch)
        assert first.count(width) == 1, recorder.batches
    assert max(len(batch) for batch in recorder.batches) == 4, recorder.batches
    assert sum(len(batch) for batch in recorder.batches) == 24
