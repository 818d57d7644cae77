"""Bounded frame queues: drop-oldest for live sources, blocking for file sources.

Both can be closed: a closed queue accepts nothing more and wakes every waiting reader, which is
the sentinel that lets a reader see the end of a source without waiting out its timeout.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class _BoundedQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._closed = False
        self._cond = threading.Condition()

    def get(self, timeout_s: float) -> T | None:
        """The oldest item, or None after ``timeout_s`` seconds (at once when closed and empty)."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Refuse further items and wake all waiters; queued items can still be read."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class DropOldestQueue(_BoundedQueue[T]):
    """A queue of at most ``maxsize`` items that drops its oldest item to make room, counting drops."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._drops = 0

    def put(self, item: T) -> int:
        """Append ``item``; return how many old items were dropped for it (0 or 1).

        A closed queue ignores the item and returns 0.
        """
        with self._cond:
            if self._closed:
                return 0
            dropped = 0
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                dropped += 1
            self._items.append(item)
            self._drops += dropped
            self._cond.notify_all()
            return dropped

    @property
    def drops(self) -> int:
        """Items dropped since the queue was made."""
        with self._cond:
            return self._drops


class BlockingQueue(_BoundedQueue[T]):
    """A queue of at most ``maxsize`` items whose producer waits for room (backpressure)."""

    def put(self, item: T, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Append ``item`` once there is room; False (item not added) if ``stop`` is set or the queue closes.

        ``stop`` is checked every ``poll_s`` seconds while waiting, so a stopping producer never hangs.
        """
        with self._cond:
            while len(self._items) >= self.maxsize:
                if self._closed or stop.is_set():
                    return False
                self._cond.wait(poll_s)
            if self._closed or stop.is_set():
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True
