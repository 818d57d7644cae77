"""Calibration images for INT8: frames from a folder of images or sampled from a video, and crops of them.

INT8 scales are only as good as the data they were measured on, so the exporters calibrate on the
site's own footage: person-shaped crops for the CLIP image encoder, whole frames for YOLO. Frames
used for calibration are never reused for the parity check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from export.errors import CalibrationError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def _evenly(total: int, count: int) -> list[int]:
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)})


def read_frames(source: str | Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` BGR frames: evenly spaced images of a folder (sorted by name), or of a video.

    Raises:
        CalibrationError: a missing source, an unreadable video, or no readable image.
    """
    source = Path(source).expanduser()
    if count < 1:
        raise CalibrationError("the calibration needs at least one frame")
    frames: list[np.ndarray] = []
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        for index in _evenly(len(files), count):
            image = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("skipping unreadable calibration image %s", files[index])
                continue
            frames.append(image)
    elif source.is_file():
        capture = cv2.VideoCapture(str(source))
        if not capture.isOpened():
            raise CalibrationError(f"cannot open calibration video {source}")
        try:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            wanted = set(_evenly(total, count)) if total > 0 else None
            index = 0
            while len(frames) < count:
                if wanted is not None and index not in wanted:
                    if not capture.grab():
                        break
                else:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    frames.append(frame)
                index += 1
        finally:
            capture.release()
    else:
        raise CalibrationError(f"calibration source not found: {source} (give a folder of images or a video)")
    if not frames:
        raise CalibrationError(f"no readable frames in {source}")
    logger.info("calibration: %d frames from %s", len(frames), source)
    return frames


def person_crops(frames: Sequence[np.ndarray], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` BGR crops shaped like people (taller than wide, 15-90 % of the frame height).

    The exporters have no detector, so crops are placed at random; on street footage many contain
    people, and all have the statistics of the site's pixels, which is what the scales need.
    """
    crops = []
    for index in range(count):
        frame = frames[index % len(frames)]
        height, width = frame.shape[:2]
        box_h = max(8, int(height * rng.uniform(0.15, 0.9)))
        box_w = max(4, min(width, int(box_h / rng.uniform(1.5, 3.2))))
        y = int(rng.integers(0, max(1, height - box_h + 1)))
        x = int(rng.integers(0, max(1, width - box_w + 1)))
        crops.append(np.ascontiguousarray(frame[y : y + box_h, x : x + box_w]))
    return crops


def batches(
    images: Sequence[np.ndarray],
    batch_size: int,
    preprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed input dicts of up to ``batch_size`` images each."""
    for start in range(0, len(images), batch_size):
        yield preprocess(list(images[start : start + batch_size]))


def split_frames(
    frames: Sequence[np.ndarray], parity_share: float = 0.25
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Disjoint (calibration, parity) lists; ``parity_share`` of the frames, evenly spaced, go to parity."""
    if len(frames) < 2:
        return list(frames), []
    parity_count = max(1, round(len(frames) * parity_share))
    step = max(1, len(frames) // parity_count)
    parity_index = set(range(step - 1, len(frames), step))
    calibration = [f for i, f in enumerate(frames) if i not in parity_index]
    parity = [f for i, f in enumerate(frames) if i in parity_index]
    return calibration, parity
