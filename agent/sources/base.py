"""The camera source interface: states, statistics and errors shared by every kind of source."""

from __future__ import annotations

import abc
import enum
from dataclasses import asdict, dataclass
from typing import Any

from agent.sources.config import CameraConfig
from agent.types import Frame


class SourceError(Exception):
    """A source that cannot be built (unsupported URI, bad parameters, GStreamer missing)."""


class SourceState(str, enum.Enum):
    """Where a source is in its life.

    ``starting`` until the first frame, ``running`` while frames flow, ``reconnecting`` while a live
    source waits out its backoff or reconnects, and one of the final states: ``ended`` (a file
    reached its end), ``failed`` (a file could not be read) or ``stopped`` (:meth:`Source.stop`).
    """

    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_final(self) -> bool:
        """True for the states a source never leaves."""
        return self in (SourceState.ENDED, SourceState.FAILED, SourceState.STOPPED)


@dataclass(frozen=True)
class SourceStats:
    """A consistent snapshot of one source's counters.

    Attributes:
        camera_id: the camera's id.
        state: the source's state when the snapshot was taken.
        frames: frames delivered into the source's queue since start (equals the next frame index).
        drops: frames a live source dropped because its queue was full (oldest first).
        reconnects: times a live source tore its pipeline down and connected again.
        last_frame_age_s: seconds since the last delivered frame; None before the first frame.
        fps: delivered frames per second, measured over a sliding window of a few seconds.
        last_error: the most recent error, naming the camera and URI; None when there was none.
        width: width of the delivered frames in pixels; None before the first frame.
        height: height of the delivered frames in pixels; None before the first frame.
        queued: frames waiting in the queue to be read.
    """

    camera_id: str
    state: SourceState
    frames: int
    drops: int
    reconnects: int
    last_frame_age_s: float | None
    fps: float
    last_error: str | None
    width: int | None
    height: int | None
    queued: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-ready values (the state as its string value)."""
        data = asdict(self)
        data["state"] = self.state.value
        return data


class Source(abc.ABC):
    """One camera's frames, produced by a worker thread into a bounded queue.

    Live sources (RTSP, HTTP, USB, test patterns) reconnect on errors and drop the oldest queued
    frame when the reader falls behind; file sources block until the reader makes room.
    """

    camera: CameraConfig
    is_live: bool

    @abc.abstractmethod
    def start(self) -> None:
        """Start the worker thread and return at once."""

    @abc.abstractmethod
    def read(self, timeout_s: float) -> Frame | None:
        """The next frame, or None when none arrived within ``timeout_s`` seconds."""

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """True when the source will never produce another frame and its queue is empty."""

    @abc.abstractmethod
    def stats(self) -> SourceStats:
        """A thread-safe snapshot of the source's counters."""

    @abc.abstractmethod
    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the worker; returns within ``timeout_s`` seconds even if GStreamer hangs."""

    @property
    @abc.abstractmethod
    def native_fps(self) -> float | None:
        """The stream's nominal frame rate in frames per second once known, else None.

        This is the decoded stream's rate, before the camera's ``analysis_fps`` limit; the rate
        of delivered frames is ``min(native_fps, analysis_fps)``.
        """
