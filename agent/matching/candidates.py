"""The bounded queue between the matcher and the next stage (re-ranker or alert manager)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.types import Candidate

log = logging.getLogger(__name__)


class CandidateQueue:
    """Bounded; when full, the lowest-scoring candidate (the oldest among equals) is dropped and counted."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: list[tuple[int, Candidate]] = []
        self._sequence = 0
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def put(self, candidate: Candidate) -> None:
        with self._cond:
            self._sequence += 1
            self.put_count += 1
            self._items.append((self._sequence, candidate))
            if len(self._items) > self.maxsize:
                worst = min(self._items, key=lambda item: (item[1].final_score, item[0]))
                self._items.remove(worst)
                self.dropped += 1
                log.debug("candidate queue full: dropped %s/%s", worst[1].camera_id, worst[1].track_id)
            self._cond.notify()

    def put_many(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            self.put(candidate)

    def get(self, timeout_s: float) -> Candidate | None:
        """The oldest waiting candidate, or None after ``timeout_s`` seconds or once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            return self._items.pop(0)[1]

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class CandidateDispatcher:
    """A thread that hands queued candidates to ``consume`` (re-ranker submit or alert manager)."""

    def __init__(self, queue: CandidateQueue, consume: Callable[[Candidate], None]) -> None:
        self.queue = queue
        self.consume = consume
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="candidates", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() or len(self.queue):
            candidate = self.queue.get(timeout_s=0.2)
            if candidate is None:
                continue
            try:
                self.consume(candidate)
            except Exception:
                log.exception("candidate %s/%s: next stage failed", candidate.camera_id, candidate.track_id)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then stop."""
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout_s)
