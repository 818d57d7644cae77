"""Thread-safe per-camera counters behind :meth:`Source.stats`."""

from __future__ import annotations

import threading
import time
from collections import deque

from agent.sources.base import SourceState, SourceStats


class RateMeter:
    """Events per second over a sliding window of ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float, max_events: int = 4096) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_events)

    def add(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        """Events per second between the first and last event still inside the window; 0 below two."""
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class SourceCounters:
    """Counters written by a source's worker thread and read by anyone through :meth:`snapshot`."""

    def __init__(self, camera_id: str, fps_window_s: float = 5.0) -> None:
        self.camera_id = camera_id
        self._lock = threading.Lock()
        self._state = SourceState.STARTING
        self._frames = 0
        self._drops = 0
        self._reconnects = 0
        self._last_frame_monotonic: float | None = None
        self._last_error: str | None = None
        self._size: tuple[int, int] | None = None
        self._rate = RateMeter(fps_window_s)

    def frame_delivered(self, width: int, height: int, now: float | None = None) -> None:
        """Count one frame of ``width`` x ``height`` pixels put into the queue."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._frames += 1
            self._last_frame_monotonic = now
            self._size = (width, height)
            self._rate.add(now)

    def dropped(self, count: int = 1) -> None:
        with self._lock:
            self._drops += count

    def reconnecting(self, error: str | None) -> None:
        """Count a reconnect and record why it was needed."""
        with self._lock:
            self._reconnects += 1
            if error is not None:
                self._last_error = error
            if not self._state.is_final:
                self._state = SourceState.RECONNECTING

    def set_state(self, state: SourceState, error: str | None = None) -> None:
        """Move to ``state`` (a final state is never left) and record ``error`` if given."""
        with self._lock:
            if error is not None:
                self._last_error = error
            if not self._state.is_final:
                self._state = state

    @property
    def state(self) -> SourceState:
        with self._lock:
            return self._state

    @property
    def frames(self) -> int:
        with self._lock:
            return self._frames

    def snapshot(self, queued: int = 0) -> SourceStats:
        """All counters, read together under one lock."""
        now = time.monotonic()
        with self._lock:
            age = None if self._last_frame_monotonic is None else now - self._last_frame_monotonic
            return SourceStats(
                camera_id=self.camera_id,
                state=self._state,
                frames=self._frames,
                drops=self._drops,
                reconnects=self._reconnects,
                last_frame_age_s=age,
                fps=self._rate.rate(now),
                last_error=self._last_error,
                width=None if self._size is None else self._size[0],
                height=None if self._size is None else self._size[1],
                queued=queued,
            )
