"""The detector interface every detection backend implements."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from agent.types import Detections

logger = logging.getLogger(__name__)

WARMUP_SHAPE = (480, 640)  # height, width in pixels of the synthetic warm-up frames


class DetectorError(RuntimeError):
    """A detector that cannot be built or run: a missing, unreadable or corrupt model, a missing extra."""


@dataclass
class DetectorTimings:
    """Start-up costs kept apart from steady-state inference, in seconds.

    Attributes:
        load_s: reading and building the model.
        warmup_s: the first inferences (graph allocation, kernel selection) at construction.
        batches: steady-state calls of the backend since construction.
        frames: frames in those calls.
        infer_s: wall time spent in those calls, pre- and post-processing included.
    """

    load_s: float = 0.0
    warmup_s: float = 0.0
    batches: int = 0
    frames: int = 0
    infer_s: float = 0.0

    @property
    def fps(self) -> float:
        """Steady-state throughput in frames per second (0 before any frame)."""
        return self.frames / self.infer_s if self.infer_s > 0 else 0.0

    @property
    def batch_latency_s(self) -> float:
        """Mean steady-state wall time of one batch, in seconds (0 before any batch)."""
        return self.infer_s / self.batches if self.batches else 0.0


def _check_image(index: int, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image {index} must be an HxWx3 uint8 BGR array, got {dtype} {shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image {index} is empty: {image.shape}")


class Detector(ABC):
    """Finds objects in BGR frames, in batches of up to :attr:`batch_size` frames.

    Backends load their model and warm it up in their constructor (so a bad model fails at start,
    and the first real frame does not pay for graph allocation), then call :meth:`_started`.

    Attributes:
        name: a human-readable name of the backend and model, for logs.
        batch_size: the most frames one inference call takes; :meth:`detect` splits longer lists.
        timings: load, warm-up and steady-state timings.
    """

    def __init__(self, name: str, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self.timings = DetectorTimings()
        self._closed = False

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in each image.

        Args:
            images: BGR ``uint8`` frames of shape (height, width, 3); sizes may differ (several cameras).

        Returns:
            One :class:`Detections` per image, in the same order, with boxes in that image's pixel
            coordinates (clipped to the image) and only the configured classes.
        """
        if self._closed:
            raise DetectorError(f"{self.name} is closed")
        for index, image in enumerate(images):
            _check_image(index, image)
        results: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            started = time.perf_counter()
            results.extend(self._detect_batch(batch))
            self.timings.infer_s += time.perf_counter() - started
            self.timings.batches += 1
            self.timings.frames += len(batch)
        return results

    @abstractmethod
    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Run one inference on 1 to :attr:`batch_size` validated images."""

    def _warm_up(self) -> None:
        """Run the model on a full batch and on a single synthetic frame; backends may override."""
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (*WARMUP_SHAPE, 3), dtype=np.uint8) for _ in range(self.batch_size)]
        self._detect_batch(images)
        if self.batch_size > 1:
            self._detect_batch(images[:1])

    def _started(self, load_s: float) -> None:
        """Warm up, record the start-up timings and log them; called at the end of a backend's constructor."""
        self.timings.load_s = load_s
        started = time.perf_counter()
        self._warm_up()
        self.timings.warmup_s = time.perf_counter() - started
        logger.info(
            "detector %s ready: load %.2f s, warm-up %.2f s, batch size %d",
            self.name,
            self.timings.load_s,
            self.timings.warmup_s,
            self.batch_size,
        )

    def close(self) -> None:
        """Release the model; the detector cannot be used afterwards. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._release()
        if self.timings.frames:
            logger.info(
                "detector %s closed: %d frames in %d batches, %.1f frames/s, %.1f ms per batch",
                self.name,
                self.timings.frames,
                self.timings.batches,
                self.timings.fps,
                self.timings.batch_latency_s * 1000,
            )

    def _release(self) -> None:  # noqa: B027  (an optional hook, not an abstract method)
        """Free backend resources; backends override when they hold any."""

    def __enter__(self) -> Detector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, batch_size={self.batch_size})"
