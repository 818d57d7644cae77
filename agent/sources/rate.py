"""Frame-rate limiting by timestamp, for streams whose frame rate is variable."""

from __future__ import annotations


class RateLimiter:
    """Keeps at most ``max_fps`` frames per second, judged by their timestamps in seconds.

    Kept frames sit on a grid of ``1 / max_fps`` seconds so the average rate is exact even when
    the input rate is not a multiple of it; a frame up to ``tolerance`` of a period early still
    counts as on time (timestamp jitter). A gap longer than a period restarts the grid instead of
    letting a burst through, and a timestamp that goes backwards (a seek or a restarted stream)
    restarts it too. Never keeps more frames than arrive: it only drops.
    """

    def __init__(self, max_fps: float, tolerance: float = 0.1) -> None:
        if max_fps <= 0:
            raise ValueError(f"max_fps must be positive, got {max_fps}")
        self.period_s = 1.0 / max_fps
        self._early_s = tolerance * self.period_s
        self._last_kept_s: float | None = None
        self._next_due_s = 0.0

    def keep(self, timestamp_s: float) -> bool:
        """Whether the frame at ``timestamp_s`` seconds should pass."""
        if self._last_kept_s is None or timestamp_s < self._last_kept_s:
            self._last_kept_s = timestamp_s
            self._next_due_s = timestamp_s + self.period_s
            return True
        if timestamp_s < self._next_due_s - self._early_s:
            return False
        late_s = timestamp_s - self._next_due_s
        self._next_due_s = (
            self._next_due_s + self.period_s if late_s < self.period_s else timestamp_s + self.period_s
        )
        self._last_kept_s = timestamp_s
        return True

    def reset(self) -> None:
        self._last_kept_s = None
