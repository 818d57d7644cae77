"""Repeated log lines, limited: a flood of one warning costs a few lines a minute and a count.

Half-open connections by the thousand made asyncio log ``socket.accept() out of system resource``
with a traceback thousands of times a second (51 MB in 30 s). :class:`RepeatLimitFilter` lets the
first few records of each kind through per window and drops the rest; the next one that passes says
how many were left out. :class:`LogBudget` is the same budget for a component that logs a kind of
event itself (one API client locked out after another).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_BURST = 5
DEFAULT_WINDOW_S = 60.0
MAX_KINDS = 1024
_DIGITS = re.compile(r"\d+")


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


def _kind(record: logging.LogRecord) -> tuple[str, int, str]:
    """What makes two records "the same line": logger, level and the message template's first line
    with its numbers masked (asyncio writes file descriptors into its message text)."""
    template = str(record.msg).split("\n", 1)[0][:200]
    return record.name, record.levelno, _DIGITS.sub("#", template)


class RepeatLimitFilter(logging.Filter):
    """Passes at most ``burst`` records of one kind (see :func:`_kind`) per ``window_s`` seconds at
    ``level`` and above; lower levels always pass (periodic status lines are INFO by design).

    Install it on handlers (:func:`install_log_limits`). At most :data:`MAX_KINDS` kinds are
    remembered, the least recent forgotten first.
    """

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window_s: float = DEFAULT_WINDOW_S,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst, self.window_s, self.level = burst, window_s, level
        self._clock = clock
        self._budgets: OrderedDict[tuple[str, int, str], LogBudget] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        kind = _kind(record)
        with self._lock:
            budget = self._budgets.get(kind)
            if budget is None:
                budget = self._budgets[kind] = LogBudget(self.burst, self.window_s, self._clock)
                if len(self._budgets) > MAX_KINDS:
                    self._budgets.popitem(last=False)
            else:
                self._budgets.move_to_end(kind)
        refused = budget.take()
        if refused is None:
            return False
        if refused:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to the handler's own error reporting
                return True
            record.msg = f"{message} [and {refused} more like this not logged]"
            record.args = None
        return True


def install_log_limits(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RepeatLimitFilter` to every handler of ``logger`` (the root logger by default)."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RepeatLimitFilter) for f in handler.filters):
            handler.addFilter(RepeatLimitFilter())
