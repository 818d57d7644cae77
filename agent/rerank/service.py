"""The live re-ranking service: candidates in, verified candidates out, never blocking the video loop.

``submit(candidate)`` returns at once. A worker thread takes queued candidates, highest coarse score
first (oldest first among equals), as the call budget allows, in batches where the backend decodes
several at once, re-ranks them and hands each result to ``on_result`` (called on the worker thread).

Bounds, each counted in :meth:`RerankService.stats`:

* queue: at most ``queue_size`` candidates wait; a newer candidate of the same (camera, track,
  query) replaces the queued one; beyond the size the lowest-scored candidate (the oldest among
  equals) is dropped, which may be the one being submitted;
* deadline: a candidate still waiting ``deadline_s`` after submission is skipped as stale;
* budget: at most ``calls_per_minute`` LMM calls (one per candidate) in any 60-second window.
  With ``masker: lmm`` each distinct query text costs one more call, once (masks are cached);
  those few calls are not counted against the budget.

Wiring it into a pipeline takes three lines::

    service = RerankService.from_config(config.rerank, text_embedder=clip.embed_texts, on_result=alerts.put)
    ...  # for each candidate from the matcher:
    service.submit(candidate)
    ...  # at shutdown:
    service.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.rerank.backends.base import LmmBackend, build_backend
from agent.rerank.budget import CallBudget
from agent.rerank.config import RerankConfig
from agent.rerank.fusion import TextEmbedder
from agent.rerank.reranker import Reranker, RerankOutcome
from agent.types import Candidate

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5
_COUNTERS = (
    "submitted",
    "accepted",
    "replaced",
    "dropped_new",
    "dropped_queued",
    "skipped_stale",
    "completed",
    "failed",
    "discarded_at_close",
    "calls",
    "batches",
)


@dataclass(frozen=True)
class RerankResult:
    """A re-ranked candidate (its ``fused_score``/``verified``/``rationale`` already filled in).

    Attributes:
        candidate: the candidate, updated in place.
        outcome: the re-ranker's outcome (``error`` set when the backend failed).
        queued_s: seconds it waited in the queue.
        call_s: seconds its backend call (its whole batch) took.
    """

    candidate: Candidate
    outcome: RerankOutcome
    queued_s: float
    call_s: float


@dataclass(frozen=True)
class RerankStats:
    """Counters since the service started.

    ``submitted = accepted + replaced + dropped_new``; every accepted candidate ends up completed,
    failed, skipped as stale, dropped by a later submission (``dropped_queued``), or discarded at
    close, or is still queued or in flight.
    """

    submitted: int
    accepted: int
    replaced: int
    dropped_new: int
    dropped_queued: int
    skipped_stale: int
    completed: int
    failed: int
    discarded_at_close: int
    calls: int
    batches: int
    queued: int
    in_flight: int
    calls_last_minute: int
    busy_s: float
    last_error: str | None

    @property
    def dropped(self) -> int:
        """Candidates dropped because the queue was full (new or queued)."""
        return self.dropped_new + self.dropped_queued


@dataclass
class _Entry:
    candidate: Candidate
    submitted_at: float
    sequence: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.candidate.camera_id, self.candidate.track_id, self.candidate.query_id)


class RerankService:
    """Re-ranks candidates asynchronously under a call budget; see the module docstring.

    Args:
        config: the re-ranking config (budget, queue, deadline, batch, fusion).
        backend: the LMM backend; closed by :meth:`close` only when the service built it.
        text_embedder: texts -> L2-normalised embeddings for blank agreement (CLIP's ``embed_texts``).
        on_result: called with each :class:`RerankResult`, on the worker thread; must not block long.
        reranker: a ready re-ranker to use instead of building one from config and backend.
        clock: monotonic seconds (queue times, deadline, budget).
    """

    def __init__(
        self,
        config: RerankConfig,
        backend: LmmBackend,
        text_embedder: TextEmbedder | None = None,
        on_result: Callable[[RerankResult], None] | None = None,
        *,
        reranker: Reranker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backend = backend
        self.on_result = on_result
        self.reranker = reranker if reranker is not None else Reranker(config, backend, text_embedder)
        self.budget = CallBudget(config.calls_per_minute, config.effective_burst, clock)
        self._clock = clock
        self._owns_backend = False
        self._queue: list[_Entry] = []
        self._sequence = 0
        self._in_flight = 0
        self._closing = False
        self._cond = threading.Condition()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._busy_s = 0.0
        self._last_error: str | None = None
        self._worker = threading.Thread(target=self._run, name="rerank-worker", daemon=True)
        self._worker.start()

    @classmethod
    def from_config(
        cls,
        config: RerankConfig,
        text_embedder: TextEmbedder | None = None,
        on_result: Callable[[RerankResult], None] | None = None,
    ) -> RerankService:
        """Build the backend the config names (loads the model now) and start the service."""
        if config.backend is None:
            raise ValueError("the re-ranking config has no backend")
        service = cls(config, build_backend(config.backend), text_embedder, on_result)
        service._owns_backend = True
        return service

    # --- producer side -----------------------------------------------------------------------

    def submit(self, candidate: Candidate) -> bool:
        """Queue a candidate without blocking; False when not queued (closed, or lowest in a full queue).

        The service writes ``fused_score``, ``verified`` and ``rationale`` into the candidate later, on
        its worker thread; the caller should not change it after submitting.
        """
        with self._cond:
            if self._closing:
                return False
            self._counts["submitted"] += 1
            now = self._clock()
            self._sequence += 1
            entry = _Entry(candidate, now, self._sequence)
            for index, queued in enumerate(self._queue):
                if queued.key == entry.key:
                    self._queue[index] = entry
                    self._counts["replaced"] += 1
                    self._cond.notify_all()
                    return True
            if len(self._queue) >= self.config.queue_size:
                victim = min(self._queue, key=lambda e: (e.candidate.score, e.submitted_at, e.sequence))
                if candidate.score < victim.candidate.score:
                    self._counts["dropped_new"] += 1
                    return False
                self._queue.remove(victim)
                self._counts["dropped_queued"] += 1
            self._queue.append(entry)
            self._counts["accepted"] += 1
            self._cond.notify_all()
            return True

    def stats(self) -> RerankStats:
        """A consistent snapshot of the counters."""
        with self._cond:
            return RerankStats(
                **self._counts,
                queued=len(self._queue),
                in_flight=self._in_flight,
                calls_last_minute=self.budget.calls_in_window(),
                busy_s=self._busy_s,
                last_error=self._last_error,
            )

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is queued or in flight (True), or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking candidates, discard the queue, wait up to ``timeout_s`` for the call in flight."""
        with self._cond:
            if self._closing and not self._worker.is_alive():
                return
            self._closing = True
            self._counts["discarded_at_close"] += len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            log.warning("re-ranker still busy with an LMM call after %.1f s; leaving it to finish", timeout_s)
            return
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> RerankService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- worker ------------------------------------------------------------------------------

    def _expire_stale(self, now: float) -> float | None:
        """Drop entries past the deadline; returns the time the next one goes stale (None: queue empty)."""
        deadline_s = self.config.deadline_s
        fresh = [e for e in self._queue if now - e.submitted_at <= deadline_s]
        stale = len(self._queue) - len(fresh)
        if stale:
            self._counts["skipped_stale"] += stale
            self._queue = fresh
            log.debug("skipped %d stale candidate(s)", stale)
            self._cond.notify_all()
        return min((e.submitted_at + deadline_s for e in self._queue), default=None)

    def _next_batch(self) -> list[_Entry] | None:
        """Wait for work and budget; None when closing."""
        with self._cond:
            while True:
                if self._closing:
                    return None
                now = self._clock()
                next_stale = self._expire_stale(now)
                if next_stale is None:
                    self._cond.wait(IDLE_WAIT_S)
                    continue
                budget_wait = self.budget.wait_s()
                if budget_wait <= 0:
                    break
                self._cond.wait(max(0.001, min(budget_wait, next_stale - now + 1e-3, IDLE_WAIT_S)))
            limits = (
                self.config.batch_size,
                self.backend.max_batch_size,
                self.budget.available(),
                len(self._queue),
            )
            size = max(min(limits), 1)
            self._queue.sort(key=lambda e: (-e.candidate.score, e.submitted_at, e.sequence))
            batch, self._queue = self._queue[:size], self._queue[size:]
            self.budget.take(len(batch))
            self._in_flight = len(batch)
            self._counts["calls"] += len(batch)
            self._counts["batches"] += 1
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            started = self._clock()
            results: list[RerankResult] = []
            try:
                outcomes = self.reranker.rerank_candidates([entry.candidate for entry in batch])
                call_s = self._clock() - started
                results = [
                    RerankResult(entry.candidate, outcome, started - entry.submitted_at, call_s)
                    for entry, outcome in zip(batch, outcomes, strict=True)
                ]
                error = next((o.error for o in outcomes if o.error), None)
            except Exception as exc:  # a bug or a backend that broke its contract: keep the worker alive
                log.exception("re-ranking a batch of %d failed", len(batch))
                outcomes, error = [], f"{type(exc).__name__}: {exc}"
            with self._cond:
                self._busy_s += self._clock() - started
                failed = sum(1 for o in outcomes if o.error) + (len(batch) - len(outcomes))
                self._counts["failed"] += failed
                self._counts["completed"] += len(batch) - failed
                if error:
                    self._last_error = error
                self._in_flight = 0
                self._cond.notify_all()
            if self.on_result is not None:
                for result in results:
                    try:
                        self.on_result(result)
                    except Exception:
                        log.exception("re-rank result callback failed")
