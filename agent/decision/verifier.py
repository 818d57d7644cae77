"""The LMM stage beside the decision core: a batch goes out, decisions come back through an inbox.

:class:`LmmWorker` (live) calls the stage on its own thread, one batch at a time, and leaves the
decisions in an inbox the core empties at its next record; the core never waits for the LMM.
:class:`InlineVerifier` (``eval replay --frames``) calls the stage at once, on the core's thread:
media time stands still during the call, so a replay decides the same way on every run. Both give
the core the same interface, so the queue, its order and what is remembered are one code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from agent.matching.stage import CandidateStage, Decision
from agent.types import Candidate

log = logging.getLogger(__name__)


def _decide(stage: CandidateStage, candidates: list[Candidate], waited: list[float]) -> list[Decision]:
    """The stage's decisions; a stage that raises gives each candidate an error decision."""
    try:
        return stage.decide(candidates, waited)
    except Exception as exc:  # a bug or a backend that broke its contract: the core goes on
        log.exception("the LMM stage failed on a batch of %d", len(candidates))
        error = f"{type(exc).__name__}: {exc}"
        return [Decision(c, error=error, queued_s=w) for c, w in zip(candidates, waited, strict=True)]


class InlineVerifier:
    """Decides on the caller's thread (the replay)."""

    def __init__(self, stage: CandidateStage) -> None:
        self.stage = stage
        self._inbox: list[Decision] = []

    def capacity(self) -> int:
        return self.stage.capacity()

    def submit(self, candidates: list[Candidate], waited: list[float]) -> None:
        self._inbox += _decide(self.stage, candidates, waited)

    def collect(self) -> list[Decision]:
        inbox, self._inbox = self._inbox, []
        return inbox

    def wait_idle(self, timeout_s: float) -> bool:
        return True

    def close(self, timeout_s: float) -> None:
        self.stage.close(timeout_s)


class LmmWorker:
    """Calls the stage on its own thread, one batch at a time; see the module docstring."""

    def __init__(self, stage: CandidateStage) -> None:
        self.stage = stage
        self._cond = threading.Condition()
        self._job: tuple[list[Candidate], list[float]] | None = None
        self._busy = False
        self._inbox: deque[Decision] = deque()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="lmm", daemon=True)
        self._thread.start()

    def capacity(self) -> int:
        """Candidates the stage would take now: 0 while a batch is out."""
        with self._cond:
            if self._busy or self._stop:
                return 0
        return self.stage.capacity()

    def submit(self, candidates: list[Candidate], waited: list[float]) -> None:
        """Hand a batch to the thread (only when :meth:`capacity` was above 0)."""
        with self._cond:
            self._job, self._busy = (candidates, waited), True
            self._cond.notify_all()

    def collect(self) -> list[Decision]:
        """The decisions that came back since the last call."""
        with self._cond:
            inbox = list(self._inbox)
            self._inbox.clear()
        return inbox

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no batch is out (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._job is None:
                    return
                candidates, waited = self._job
                self._job = None
            decisions = _decide(self.stage, candidates, waited)
            with self._cond:
                self._inbox.extend(decisions)
                self._busy = False
                self._cond.notify_all()

    def close(self, timeout_s: float) -> None:
        """Stop taking batches, wait up to ``timeout_s`` for the one out, close the stage."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("decisions: an LMM call still runs after %.1f s; leaving it to finish", timeout_s)
        self.stage.close(max(0.0, deadline - time.monotonic()))
