"""Log lines of one kind, limited: a flood of one event costs a few lines a minute and a count.

:class:`LogBudget` is the budget for a component that logs one kind of event itself (one API client
locked out after another).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_BURST = 5
DEFAULT_WINDOW_S = 60.0


class LogBudget:
    """At most ``burst`` passes per window of ``window_s`` seconds; the refusals are counted.

    Thread-safe. :meth:`take` returns None for a refusal, else how many were refused since the
    previous pass (to be said in the line that is logged).
    """

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._passed = 0
        self._refused = 0

    def take(self) -> int | None:
        now = self._clock()
        with self._lock:
            if now - self._window_start >= self.window_s:
                self._window_start, self._passed = now, 0
            if self._passed >= self.burst:
                self._refused += 1
                return None
            self._passed += 1
            refused, self._refused = self._refused, 0
            return refused
