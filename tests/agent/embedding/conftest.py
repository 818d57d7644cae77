"""Fixtures of the embedding tests (the tiny CLIP export itself is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SAMPLE_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
# People in frame 60 of the sample video: x1, y1, x2, y2 in pixels.
PEOPLE_FRAME = 60
PEOPLE_BOXES = np.array(
    [
        [468, 205, 508, 298],
        [512, 202, 545, 290],
        [620, 238, 658, 348],
        [376, 172, 402, 260],
        [400, 182, 428, 264],
    ],
    dtype=np.float32,
)


@pytest.fixture(scope="session")
def people_boxes() -> np.ndarray:
    """Boxes of the five people in frame 60 of the sample video (``sample_frames[2]``)."""
    return PEOPLE_BOXES.copy()


@pytest.fixture(scope="session")
def sample_frames() -> list[np.ndarray]:
    """Frames 0, 30, ..., 90 of the sample video (BGR); frame index 2 is frame 60."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames = []
    for index in range(91):
        ok, frame = capture.read()
        assert ok, f"cannot read frame {index} of {SAMPLE_VIDEO}"
        if index % 30 == 0:
            frames.append(frame)
    capture.release()
    return frames
