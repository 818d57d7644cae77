"""The LMM request budget: a token bucket for spacing, and a sliding 60-second window as a hard cap.

A "call" here is one request to the model: every HTTP request of the OpenAI-compatible backend,
retries included, and every request of a decoded batch of the in-process backend. The backends
take their tokens through :meth:`CallBudget.acquire`, just before each request goes out.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class CallBudget:
    """Allows at most ``calls_per_minute`` calls in any 60-second window, at most ``burst`` back to back.

    The token bucket holds ``burst`` tokens and refills at ``calls_per_minute / 60`` per second, which
    spreads calls evenly; the sliding window makes the per-minute cap hold exactly, whatever the
    bucket size (a bucket alone would allow ``burst`` extra calls in the first minute).

    Args:
        calls_per_minute: the cap; fractions are allowed (0.5 = one call every two minutes).
        burst: bucket size, the most calls that may start at the same moment (a batch).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self, calls_per_minute: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if calls_per_minute <= 0 or burst < 1:
            raise ValueError("calls_per_minute must be positive and burst at least 1")
        self.rate_per_s = calls_per_minute / WINDOW_S
        self.window_limit = max(1, math.floor(calls_per_minute))
        self.burst = min(burst, self.window_limit)
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        while self._starts and self._starts[0] <= now - WINDOW_S:
            self._starts.popleft()

    def available(self) -> int:
        """How many calls may start now."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            return max(0, min(math.floor(self._tokens + 1e-9), self.window_limit - len(self._starts)))

    def wait_s(self) -> float:
        """Seconds until at least one call may start (0 when one may start now)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            bucket_wait = 0.0
            if self._tokens < 1.0 - 1e-9:
                bucket_wait = (1.0 - self._tokens) / self.rate_per_s
            window_wait = 0.0
            if len(self._starts) >= self.window_limit:
                expires = self._starts[len(self._starts) - self.window_limit]
                window_wait = max(0.0, expires + WINDOW_S - now)
            return max(bucket_wait, window_wait)

    def take(self, calls: int) -> None:
        """Record ``calls`` calls starting now; raises ValueError when more than :meth:`available`."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            allowed = min(math.floor(self._tokens + 1e-9), self.window_limit - len(self._starts))
            if calls > allowed:
                raise ValueError(f"{calls} calls requested but only {max(allowed, 0)} allowed now")
            self._tokens -= calls
            self._starts.extend([now] * calls)

    def acquire(
        self,
        calls: int,
        stop: Callable[[], bool] | None = None,
        max_wait_s: float | None = None,
        poll_s: float = 0.25,
    ) -> bool:
        """Wait until ``calls`` calls may start, then record them.

        Returns False, having recorded none of the calls still waiting, when ``stop()`` turns true,
        when ``max_wait_s`` (on the budget's clock) passes, or when the clock does not move while
        waiting (a media clock in a replay: waiting cannot help). Calls beyond the bucket size are
        taken a bucket at a time.
        """
        started = self._clock()
        remaining = calls
        while remaining > 0:
            step = min(remaining, self.burst)
            while True:
                if stop is not None and stop():
                    return False
                with self._lock:
                    now = self._clock()
                    self._refill(now)
                    allowed = min(math.floor(self._tokens + 1e-9), self.window_limit - len(self._starts))
                    if allowed >= step:
                        self._tokens -= step
                        self._starts.extend([now] * step)
                        break
                if max_wait_s is not None and now - started >= max_wait_s:
                    return False
                wait = self.wait_s()
                time.sleep(max(0.001, min(wait, poll_s)) if step == 1 else min(max(wait, 0.01), poll_s))
                if self._clock() == now:
                    return False
            remaining -= step
        return True

    def recent_starts(self) -> tuple[float, ...]:
        """Clock times of the calls started in the last 60 seconds, oldest first."""
        with self._lock:
            self._refill(self._clock())
            return tuple(self._starts)

    def calls_in_window(self) -> int:
        """Calls started in the last 60 seconds."""
        with self._lock:
            self._refill(self._clock())
            return len(self._starts)
