"""Fixtures of the embedding tests: the tiny CLIP export shared with tests/export (built once per session)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest


def _tiny_models() -> ModuleType:
    if "tiny_models" in sys.modules:
        return sys.modules["tiny_models"]
    path = Path(__file__).resolve().parents[2] / "export" / "tiny_models.py"
    spec = importlib.util.spec_from_file_location("tiny_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_models"] = module
    spec.loader.exec_module(module)
    return module


tiny_models = _tiny_models()
SAMPLE_VIDEO: Path = tiny_models.SAMPLE_VIDEO
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
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.shared_dir(tmp_path_factory, "tiny-clip", tiny_models.build_tiny_clip)


@pytest.fixture(scope="session")
def clip_fp32(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    def build(directory: Path) -> None:
        tiny_models.export_tiny_clip(directory, tiny_clip_dir, "fp32")

    return tiny_models.shared_dir(tmp_path_factory, "clip-fp32", build)


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
