"""The one interface between the matcher and what decides on its candidates: a candidate goes in,
a decision comes out.

A stage (the LMM re-ranker is one) takes a batch of candidates when it has room and returns one
:class:`Decision` per candidate. The :class:`~agent.decision.core.DecisionCore` owns the only
queue in front of it, asks the stage how many candidates it can take now (its budget), hands it a
batch on the LMM's own thread (:class:`~agent.decision.verifier.LmmWorker`) and applies the
decisions that come back at its next record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.types import Candidate


@dataclass(frozen=True)
class Decision:
    """What a stage decided about one candidate.

    Attributes:
        candidate: the candidate, with the stage's ``fused_score``, ``verified`` and ``rationale``
            written into it.
        error: why the stage could not decide (backend error), or None.
        queued_s: seconds the candidate waited in the queue before the stage took it.
        call_s: seconds the stage took for the batch the candidate was in.
    """

    candidate: Candidate
    error: str | None = None
    queued_s: float = 0.0
    call_s: float = 0.0


class CandidateStage(Protocol):
    """A stage between candidate selection and the alerts (see the module docstring)."""

    @property
    def deadline_s(self) -> float | None:
        """A candidate that waited this long in the queue is past use (None: no deadline)."""
        ...

    def capacity(self) -> int:
        """How many candidates the stage would take now (0: none, e.g. its call budget is spent)."""
        ...

    def wait_s(self) -> float:
        """Seconds until :meth:`capacity` may be above 0 again."""
        ...

    def decide(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Decide a batch (at most :meth:`capacity` long); one decision per candidate, in order.

        ``queued_s`` holds how long each candidate waited. Runs on the LMM's thread (live) or the
        decision core's (a replay) and may block for the length of an LMM call.
        """
        ...

    def expire(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Candidates that waited past :attr:`deadline_s`: the decisions to pass on (may be none)."""
        ...

    def overflow(self, candidates: list[Candidate], queued_s: list[float]) -> list[Decision]:
        """Candidates dropped from the full queue before the stage saw them: the decisions to pass on."""
        ...

    def close(self, timeout_s: float) -> None:
        """Release what the stage holds (its backend), waiting at most ``timeout_s`` seconds."""
        ...
