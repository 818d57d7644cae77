"""The live re-ranking stage: a batch of candidates in, one decision per candidate out.

:class:`RerankService` implements :class:`~agent.matching.stage.CandidateStage`. The queue in
front of it belongs to the :class:`~agent.decision.core.DecisionCore` (severity, then the incident
served least recently, then score) and the thread that calls it to
:class:`~agent.decision.verifier.LmmWorker`: the core hands the stage as many candidates as
:meth:`RerankService.capacity` allows, which is what the call budget limits.

Bounds, each counted in :meth:`RerankService.stats`:

* budget: at most ``calls_per_minute`` LMM requests in any 60-second window. Every request that
  reaches the model takes a token just before it goes out (the backend's request gate): every HTTP
  request of the OpenAI-compatible backend, retries included, both turns of the two-step cloze,
  and with ``masker: lmm`` the one masking request per distinct query text;
* deadline: a candidate that waited ``deadline_s`` in the queue is not sent to the LMM
  (:meth:`RerankService.expire`); it is passed on ``unverified`` with the reason ``deadline``, so
  the alert side applies its policy for unverified candidates (critical ones raise by default).

Wiring it into a pipeline::

    stage = RerankService.from_config(config.rerank, text_embedder=clip.embed_texts)
    core.verifier = LmmWorker(stage)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.api.metrics import Metric, stage_metrics
from agent.matching.stage import Decision
from agent.rerank.backends.base import BudgetError, LmmBackend, LmmError, build_backend
from agent.rerank.budget import CallBudget
from agent.rerank.config import RerankConfig
from agent.rerank.fusion import TextEmbedder
from agent.rerank.reranker import Reranker, RerankOutcome, UnverifiedReason, apply_outcome
from agent.types import Candidate

log = logging.getLogger(__name__)

_COUNTERS = ("completed", "failed", "skipped_stale", "calls", "batches")


@dataclass(frozen=True)
class RerankStats:
    """Counters since the stage started.

    Every candidate handed to the stage is completed, failed, or skipped as stale (and passed on
    unverified); ``calls`` counts LMM requests (every HTTP request, retries included; two per
    candidate with the two-step cloze), ``batches`` the batches of candidates they were made for.
    """

    completed: int
    failed: int
    skipped_stale: int
    calls: int
    batches: int
    in_flight: int
    calls_last_minute: int
    busy_s: float
    last_error: str | None


class RerankService:
    """Re-ranks candidates under a call budget; see the module docstring.

    Args:
        config: the re-ranking config (budget, deadline, batch, fusion).
        backend: the LMM backend; closed by :meth:`close` only when the service built it.
        text_embedder: texts -> L2-normalised embeddings for blank agreement (CLIP's ``embed_texts``).
        reranker: a ready re-ranker to use instead of building one from config and backend.
        clock: monotonic seconds (budget and call times).
    """

    def __init__(
        self,
        config: RerankConfig,
        backend: LmmBackend,
        text_embedder: TextEmbedder | None = None,
        *,
        reranker: Reranker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backend = backend
        self.reranker = reranker if reranker is not None else Reranker(config, backend, text_embedder)
        self.budget = CallBudget(config.calls_per_minute, config.effective_burst, clock)
        self.backend.request_gate = self._take_requests
        self._clock = clock
        self._owns_backend = False
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._in_flight = 0
        self._busy_s = 0.0
        self._last_error: str | None = None
        self._closed = False

    @classmethod
    def from_config(cls, config: RerankConfig, text_embedder: TextEmbedder | None = None) -> RerankService:
        """Build the backend the config names (loads the model now)."""
        if config.backend is None:
            raise ValueError("the re-ranking config has no backend")
        service = cls(config, build_backend(config.backend), text_embedder)
        service._owns_backend = True
        return service

    # --- the stage interface -----------------------------------------------------------------

    @property
    def deadline_s(self) -> float | None:
        return self.config.deadline_s

    def _take_requests(self, requests: int) -> None:
        """The backend's request gate: wait for the budget, then count the requests."""
        if self._closed:
            raise LmmError("the re-ranking stage is closing")
        if not self.budget.acquire(requests, stop=lambda: self._closed, max_wait_s=self.config.deadline_s):
            if self._closed:
                raise LmmError("the re-ranking stage is closing")
            raise BudgetError(
                f"the request budget ({self.config.calls_per_minute:g}/min) allowed no request "
                f"within {self.config.deadline_s:g} s"
            )
        with self._lock:
            self._counts["calls"] += requests

    def _requests_per_candidate(self) -> int:
        """Tokens a candidate needs before it is taken (a bucket smaller than that: what it holds)."""
        return min(2 if self.config.cloze_scheme == "two_step" else 1, self.budget.burst)

    def capacity(self) -> int:
        """Candidates the budget (their requests) and the backend's batch allow now."""
        if self._closed:
            return 0
        affordable = self.budget.available() // self._requests_per_candidate()
        return max(0, min(self.config.batch_size, self.backend.max_batch_size, affordable))

    def wait_s(self) -> float:
        return self.budget.wait_s()

    def decide(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Re-rank a batch: fills ``fused_score``, ``verified``, ``verification`` and ``rationale``.

        The budget's tokens are taken by the backend, one per request as it goes out.
        """
        if not candidates:
            return []
        with self._lock:
            self._in_flight = len(candidates)
            self._counts["batches"] += 1
        started = self._clock()
        try:
            outcomes = self.reranker.rerank_candidates(candidates)
        finally:
            call_s = self._clock() - started
            with self._lock:
                self._in_flight = 0
                self._busy_s += call_s
        decisions = [
            Decision(candidate, outcome.error, waited, call_s)
            for candidate, outcome, waited in zip(candidates, outcomes, queued_s, strict=True)
        ]
        failed = sum(1 for d in decisions if d.error is not None)
        with self._lock:
            self._counts["failed"] += failed
            self._counts["completed"] += len(decisions) - failed
            error = next((d.error for d in decisions if d.error), None)
            if error:
                self._last_error = error
        return decisions

    def expire(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Stale candidates are not sent to the LMM; they are passed on unverified (``deadline``).

        The alert manager then applies its policy for unverified candidates (``alerts.unverified``).
        """
        with self._lock:
            self._counts["skipped_stale"] += len(candidates)
        if candidates:
            log.debug("skipped %d stale candidate(s)", len(candidates))
        decisions = []
        for candidate, waited in zip(candidates, queued_s, strict=True):
            detail = (
                f"not sent to the LMM: waited {waited:.1f} s, past the {self.config.deadline_s:g} s deadline"
            )
            outcome = RerankOutcome.unverified(candidate.score, UnverifiedReason.DEADLINE, detail)
            outcome.rationale["query"] = candidate.query_text
            apply_outcome(candidate, outcome)
            decisions.append(Decision(candidate, None, waited, 0.0))
        return decisions

    def overflow(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Candidates dropped from a full queue never reach the LMM; passed on unverified (``budget``)."""
        decisions = []
        for candidate, waited in zip(candidates, queued_s, strict=True):
            detail = "not sent to the LMM: dropped from a full candidate queue (the budget could not keep up)"
            outcome = RerankOutcome.unverified(candidate.score, UnverifiedReason.BUDGET, detail)
            outcome.rationale["query"] = candidate.query_text
            apply_outcome(candidate, outcome)
            decisions.append(Decision(candidate, None, waited, 0.0))
        return decisions

    def metrics(self) -> list[Metric]:
        """LMM requests and the seconds the stage was busy (the ``rerank`` stage)."""
        stats = self.stats()
        return stage_metrics("rerank", stats.busy_s, stats.calls)

    def stats(self) -> RerankStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return RerankStats(
                **self._counts,
                in_flight=self._in_flight,
                calls_last_minute=self.budget.calls_in_window(),
                busy_s=self._busy_s,
                last_error=self._last_error,
            )

    def close(self, timeout_s: float = 5.0) -> None:
        """Take no more candidates and close the backend the service built.

        The LMM worker waits (up to its own timeout) for a call in flight before it closes the stage.
        """
        self._closed = True
        if self._in_flight:
            log.warning("re-ranker still busy with an LMM call; leaving its backend open")
            return
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> RerankService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
