"""The detector interface: a thin adapter over one :class:`engines.Engine`.

A detector only turns frames into the engine's input tensors and its outputs into
:class:`~agent.types.Detections`. Loading, warm-up, timing, device fallback and closing belong to
the engine (``engines/``), the same for every model the agent runs.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np

from agent.types import Detections
from engines import Engine, EngineTimings

logger = logging.getLogger(__name__)


class DetectorError(RuntimeError):
    """A detector that cannot be built or run: a missing, unreadable or corrupt model, a missing extra."""


def _check_image(index: int, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image {index} must be an HxWx3 uint8 BGR array, got {dtype} {shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image {index} is empty: {image.shape}")


@dataclass
class PreparedBatch:
    """A batch ready for :meth:`Detector.infer`: its frames and the detector's own input for them.

    Attributes:
        images: the validated frames, in order.
        inputs: what the detector made of them (YOLO: a view of its preallocated input buffer and
            each frame's letterbox); None for a detector that does all its work in ``infer``.
    """

    images: list[np.ndarray]
    inputs: Any = None


class Detector(ABC):
    """Finds objects in BGR frames, in batches of up to :attr:`batch_size` frames, on one engine.

    Subclasses build their engine (which loads and warms up the model, so a bad model fails at
    start) and implement :meth:`_detect_batch`.

    Attributes:
        name: a human-readable name of the model and its engine, for logs.
        engine: the engine running the graph; its ``timings`` hold load, warm-up and inference time.
        batch_size: the most frames one inference call takes; :meth:`detect` splits longer lists.
        frames: frames detected since construction.
    """

    def __init__(self, name: str, engine: Engine, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self.engine = engine
        self.batch_size = batch_size
        self.frames = 0
        self._closed = False

    @property
    def timings(self) -> EngineTimings:
        """The engine's build, load, warm-up and steady-state timings (one call per batch)."""
        return self.engine.timings

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
            results.extend(self._detect_batch(batch))
            self.frames += len(batch)
        return results

    @abstractmethod
    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Run one inference on 1 to :attr:`batch_size` validated images."""

    # --- the three steps of one batch, for a caller that overlaps them (the pipeline) ---------
    #
    # ``prepare`` (pre-processing), ``infer`` (the engine) and ``finish`` (decoding) of one batch may
    # run on different threads, and ``infer`` of one batch overlaps ``prepare`` of the next and
    # ``finish`` of the previous one. At most two prepared batches may be outstanding (prepared and
    # not yet finished): a detector may reuse a batch's input buffer for the batch after next.

    def prepare(self, images: Sequence[np.ndarray]) -> PreparedBatch:
        """Validate 1 to :attr:`batch_size` frames and pre-process them for :meth:`infer`."""
        if self._closed:
            raise DetectorError(f"{self.name} is closed")
        if not 1 <= len(images) <= self.batch_size:
            raise ValueError(f"a prepared batch holds 1 to {self.batch_size} frames, got {len(images)}")
        for index, image in enumerate(images):
            _check_image(index, image)
        return self._prepare(list(images))

    def infer(self, batch: PreparedBatch) -> Any:
        """Run the engine on a prepared batch; the raw result goes to :meth:`finish`."""
        raw = self._infer_prepared(batch)
        self.frames += len(batch.images)
        return raw

    def finish(self, batch: PreparedBatch, raw: Any) -> list[Detections]:
        """One :class:`Detections` per frame of ``batch``, in order, from :meth:`infer`'s result."""
        return self._finish(batch, raw)

    def _prepare(self, images: list[np.ndarray]) -> PreparedBatch:
        """By default nothing is done ahead: :meth:`_infer_prepared` runs the whole detection."""
        return PreparedBatch(images)

    def _infer_prepared(self, batch: PreparedBatch) -> Any:
        return self._detect_batch(batch.images)

    def _finish(self, batch: PreparedBatch, raw: Any) -> list[Detections]:
        detections: list[Detections] = raw
        return detections

    def health(self) -> dict[str, Any]:
        """The detector's engine state (``degraded`` with the reason when it runs off its device)."""
        return {**self.engine.health(), "detector": self.name, "frames": self.frames}

    def close(self) -> None:
        """Release the engine; the detector cannot be used afterwards. Calling it twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self.engine.close()
        timings = self.engine.timings
        if timings.calls:
            logger.info(
                "detector %s closed: %d frames in %d batches, %.1f ms of inference per batch",
                self.name,
                self.frames,
                timings.calls,
                timings.latency_s * 1000,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, batch_size={self.batch_size})"


class BufferedDetector(Detector):
    """A detector that pre-processes frames straight into preallocated input buffers ("slots"):
    :meth:`prepare` alternates between slots 0 and 1 (at most two prepared batches are outstanding,
    so a slot is refilled only after the engine has read it) and :meth:`detect` uses slot 2.

    Subclasses implement :meth:`_fill` (pre-process into a slot), :meth:`_infer_prepared` and
    :meth:`_finish`.
    """

    DETECT_SLOT = 2

    def __init__(self, name: str, engine: Engine, batch_size: int) -> None:
        super().__init__(name, engine, batch_size)
        self._next_slot = 0

    def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        batch = self._fill(images, self.DETECT_SLOT)
        return self._finish(batch, self._infer_prepared(batch))

    def _prepare(self, images: list[np.ndarray]) -> PreparedBatch:
        slot, self._next_slot = self._next_slot, 1 - self._next_slot
        return self._fill(images, slot)

    @abstractmethod
    def _fill(self, images: list[np.ndarray], slot: int) -> PreparedBatch:
        """Pre-process ``images`` into input buffer ``slot`` (0, 1 or :data:`DETECT_SLOT`)."""

    @abstractmethod
    def _infer_prepared(self, batch: PreparedBatch) -> Any:
        """Run the engine on a filled slot."""

    @abstractmethod
    def _finish(self, batch: PreparedBatch, raw: Any) -> list[Detections]:
        """Decode the engine's result."""
