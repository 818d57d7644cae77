"""Session fixtures of the export tests: a tiny CLIP model directory, its exports, a tiny YOLO."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import SAMPLE_VIDEO, build_tiny_clip, build_tiny_yolo, export_tiny_clip, shared_dir


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_dir(tmp_path_factory, "tiny-clip", build_tiny_clip)


@pytest.fixture(scope="session")
def clip_fp32(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    return shared_dir(tmp_path_factory, "clip-fp32", lambda d: export_tiny_clip(d, tiny_clip_dir, "fp32"))


@pytest.fixture(scope="session")
def clip_int8(tmp_path_factory: pytest.TempPathFactory, tiny_clip_dir: Path) -> Path:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"INT8 calibration uses the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    return shared_dir(tmp_path_factory, "clip-int8", lambda d: export_tiny_clip(d, tiny_clip_dir, "int8"))


@pytest.fixture(scope="session")
def tiny_yolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_dir(tmp_path_factory, "tiny-yolo", build_tiny_yolo) / "tiny-yolo.pt"


@pytest.fixture(scope="session")
def sample_video() -> Path:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"needs the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
    return SAMPLE_VIDEO
