"""Calibration frames from a video or a folder of images, person-shaped crops, disjoint parity frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from export.calibration import person_crops, read_frames, split_frames
from export.errors import CalibrationError


def test_frames_are_sampled_across_the_whole_video(sample_video: Path) -> None:
    frames = read_frames(sample_video, 5)
    assert len(frames) == 5 and all(f.shape == (576, 768, 3) and f.dtype == np.uint8 for f in frames)
    # Evenly spaced over ~800 frames: the first and last sampled frames differ (people walked).
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0


def test_frames_come_from_a_folder_of_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for index in range(6):
        cv2.imwrite(str(tmp_path / f"img{index}.png"), rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    frames = read_frames(tmp_path, 4)
    assert 3 <= len(frames) <= 4 and all(f.shape == (40, 30, 3) for f in frames)


def test_missing_or_empty_sources_are_calibration_errors(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        read_frames(tmp_path / "nothing", 4)
    with pytest.raises(CalibrationError, match="no readable frames"):
        read_frames(tmp_path, 4)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    with pytest.raises(CalibrationError):
        read_frames(bad, 4)


def test_crops_are_person_shaped_and_inside_the_frame() -> None:
    frames = [np.zeros((480, 640, 3), np.uint8)]
    crops = person_crops(frames, 50, np.random.default_rng(1))
    assert len(crops) == 50
    for crop in crops:
        height, width = crop.shape[:2]
        assert height >= width and 0.15 * 480 - 1 <= height <= 480 and width >= 4


def test_parity_frames_are_never_calibration_frames() -> None:
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(12)]
    calibration, parity = split_frames(frames)
    ids = lambda fs: {int(f[0, 0, 0]) for f in fs}  # noqa: E731
    assert parity and calibration and not ids(calibration) & ids(parity)
    assert ids(calibration) | ids(parity) == set(range(12))
    assert split_frames(frames[:1]) == (frames[:1], [])
