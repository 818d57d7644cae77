"""One re-ranking step: mask the query, ask the LMM, score agreement and verdict, fuse, decide.

Used by the live :class:`~agent.rerank.service.RerankService` (on candidates) and by the PAB
benchmark (on gallery images), through :meth:`Reranker.rerank_items`.

With ``cloze_scheme: two_step`` (the default) each item is one conversation of two turns: the cloze
turn (the query masked, the images) and, after the LMM's answer, the verdict turn (the query
revealed, plus optional context). The turns of a batch go to the backend as two batches. A query
with no blank to fill is asked the verdict turn alone.

The outcome states exactly one of ``verified`` / ``rejected`` / ``unverified``:

* ``unverified`` when the LMM said nothing readable: every blank UNKNOWN or unreadable and no
  verdict (reason ``no_answer``), or the backend failed (``error``); the service adds ``budget``
  and ``deadline`` for candidates it never sent. The fused score is then the coarse score;
* otherwise ``verified`` when the fused score reaches ``accept_threshold`` and what the LMM said
  on its own (:func:`~agent.rerank.fusion.lmm_support`) reaches ``support_threshold``, and
  ``rejected`` when not.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from agent.rerank.backends.base import BudgetError, LmmBackend, LmmError, LmmRequest, LmmResponse, Turn
from agent.rerank.config import RerankConfig
from agent.rerank.fusion import AgreementScorer, TextEmbedder, cloze_score, fuse, lmm_support
from agent.rerank.masker import CachedMasker, ClozeQuery, Masker, RuleMasker
from agent.rerank.prompt import (
    SYSTEM_PROMPT,
    UNKNOWN,
    build_cloze_prompt,
    build_cloze_turn,
    build_verdict_turn,
    cloze_system_prompt,
    parse_answer,
    verdict_probability,
)
from agent.types import Candidate

log = logging.getLogger(__name__)

FRAME_MAX_SIDE_PX = 1024
RAW_OUTPUT_CHARS = 500
BOX_COLOUR_BGR = (0, 255, 0)


class Verification(str, enum.Enum):
    """What the re-ranker concluded about a candidate."""

    VERIFIED = "verified"
    REJECTED = "rejected"
    UNVERIFIED = "unverified"


class UnverifiedReason(str, enum.Enum):
    """Why a candidate is ``unverified``."""

    NO_ANSWER = "no_answer"  # the LMM answered, but nothing readable: every blank UNKNOWN, no verdict
    BUDGET = "budget"  # a request the budget did not allow in time (or dropped from a full queue)
    DEADLINE = "deadline"  # waited past the deadline for the budget
    ERROR = "error"  # the backend failed (server unreachable after retries, generation error)


@dataclass(frozen=True)
class RerankItem:
    """One (query, image) pair to re-rank.

    Attributes:
        query_text: the natural-language query.
        coarse_score: the coarse retriever's score mapped into [0, 1].
        images: BGR ``uint8`` images; the first is the person crop, a second the frame with the box.
        context: extra facts shown with the verdict turn only (e.g. the person's posture), never
            with the cloze turn; None for none.
    """

    query_text: str
    coarse_score: float
    images: tuple[np.ndarray, ...]
    context: str | None = None


@dataclass
class RerankOutcome:
    """The re-ranker's result for one item.

    Attributes:
        fused_score: fused score in [0, 1] (the coarse score when the LMM said nothing readable), or
            None when the backend failed.
        verification: verified, rejected or unverified.
        reason: why unverified (an :class:`UnverifiedReason` value), else None.
        cloze_score: mean agreement over the answered blanks, None when none was answered.
        verdict_probability: P(yes) in [0, 1] or None when no verdict could be read.
        verdict_source: "logprobs", "text" or "none".
        support: what the LMM said on its own (cloze and verdict fused), None when nothing.
        requests: requests sent to the backend for this item (2 for two turns).
        rationale: blanks, answers, agreements, verdict and raw output: the alert's evidence.
        error: why the backend gave no answer, or None.
    """

    coarse_score: float
    fused_score: float | None
    verification: Verification = Verification.UNVERIFIED
    reason: str | None = UnverifiedReason.NO_ANSWER.value
    cloze_score: float | None = None
    verdict_probability: float | None = None
    verdict_source: str = "none"
    support: float | None = None
    requests: int = 0
    rationale: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def verified(self) -> bool | None:
        """True when verified, False when rejected, None when unverified."""
        if self.verification is Verification.VERIFIED:
            return True
        if self.verification is Verification.REJECTED:
            return False
        return None

    @classmethod
    def unverified(
        cls, coarse_score: float, reason: UnverifiedReason, detail: str | None = None
    ) -> RerankOutcome:
        """An outcome for an item the LMM never answered (``detail``: its ``error`` and rationale)."""
        rationale: dict[str, Any] = {"verification": "unverified", "verification_reason": reason.value}
        if detail:
            rationale["error"] = detail
        return cls(
            coarse_score, None, Verification.UNVERIFIED, reason.value, rationale=rationale, error=detail
        )


def frame_with_box(frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """A copy of the frame, scaled to at most :data:`FRAME_MAX_SIDE_PX`, with the box drawn in green."""
    height, width = frame.shape[:2]
    scale = min(1.0, FRAME_MAX_SIDE_PX / max(height, width))
    image = frame if scale == 1.0 else cv2.resize(frame, (round(width * scale), round(height * scale)))
    image = np.ascontiguousarray(image).copy()
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    thickness = max(2, round(max(image.shape[:2]) / 300))
    cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOUR_BGR, thickness)
    return image


class Reranker:
    """Re-ranks items with a cloze conversation through an LMM backend.

    Args:
        config: the re-ranking config (weights, thresholds, scheme, masker, frame option).
        backend: the LMM; :meth:`rerank_items` calls it with up to ``backend.max_batch_size`` items.
        text_embedder: texts -> L2-normalised embeddings (the CLIP text encoder); None: lexical.
        masker: overrides the masker chosen by ``config.masker``.
        context_for: a live candidate -> extra context for the verdict turn (e.g. its posture), or
            None; never shown in the cloze turn. An attribute, so that a later stage can set it on
            a running service: ``service.reranker.context_for = posture_text``.
    """

    def __init__(
        self,
        config: RerankConfig,
        backend: LmmBackend,
        text_embedder: TextEmbedder | None = None,
        masker: Masker | None = None,
        context_for: Callable[[Candidate], str | None] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.context_for = context_for
        self.agreement = AgreementScorer(text_embedder)
        if masker is None:
            if config.masker == "lmm":
                from agent.rerank.lmm_masker import LmmMasker

                fallback = RuleMasker(config.max_blanks)
                masker = LmmMasker(backend, fallback=fallback, max_blanks=config.max_blanks)
            else:
                masker = RuleMasker(config.max_blanks)
        self.masker = CachedMasker(masker)

    # --- items -------------------------------------------------------------------------------

    def rerank_items(self, items: Sequence[RerankItem]) -> list[RerankOutcome]:
        """Re-rank items in batches of the backend's size; a failed batch yields ``unverified`` outcomes."""
        outcomes: list[RerankOutcome] = []
        step = max(1, self.backend.max_batch_size)
        for first in range(0, len(items), step):
            outcomes.extend(self._rerank_batch(items[first : first + step]))
        return outcomes

    def _images(self, item: RerankItem) -> tuple[np.ndarray, ...]:
        return item.images if self.config.include_frame else item.images[:1]

    def _frame_shown(self, item: RerankItem) -> bool:
        return self.config.include_frame and len(item.images) > 1

    def _failed(
        self, items: Sequence[RerankItem], clozes: Sequence[ClozeQuery], exc: Exception
    ) -> list[RerankOutcome]:
        log.warning("LMM backend %s failed on %d item(s): %s", self.backend.name, len(items), exc)
        outcomes = []
        for item, cloze in zip(items, clozes, strict=True):
            reason = UnverifiedReason.BUDGET if isinstance(exc, BudgetError) else UnverifiedReason.ERROR
            outcome = RerankOutcome.unverified(item.coarse_score, reason, str(exc))
            outcome.rationale["query"] = cloze.query
            outcomes.append(outcome)
        return outcomes

    def _ask(self, requests: list[LmmRequest]) -> list[LmmResponse]:
        if not requests:
            return []
        responses = self.backend.generate(requests)
        if len(responses) != len(requests):
            raise LmmError(f"backend answered {len(responses)} of {len(requests)} requests")
        return responses

    def _rerank_batch(self, items: Sequence[RerankItem]) -> list[RerankOutcome]:
        clozes = [self.masker.mask(item.query_text) for item in items]
        started = time.perf_counter()
        if self.config.cloze_scheme == "one_step":
            requests = [
                LmmRequest(build_cloze_prompt(c, self._frame_shown(i)), self._images(i), SYSTEM_PROMPT, True)
                for i, c in zip(items, clozes, strict=True)
            ]
            try:
                responses = self._ask(requests)
            except LmmError as exc:
                return self._failed(items, clozes, exc)
            elapsed = time.perf_counter() - started
            return [
                self._score(item, cloze, response, response, None, elapsed, 1)
                for item, cloze, response in zip(items, clozes, responses, strict=True)
            ]
        # two steps: the blanks with the query masked, then the verdict with the query revealed
        cloze_turns: dict[int, LmmRequest] = {}
        for index, (item, cloze) in enumerate(zip(items, clozes, strict=True)):
            if cloze.blanks:
                prompt = build_cloze_turn(cloze, self._frame_shown(item))
                cloze_turns[index] = LmmRequest(prompt, self._images(item), cloze_system_prompt(cloze), True)
        try:
            answers = dict(zip(cloze_turns, self._ask(list(cloze_turns.values())), strict=True))
        except LmmError as exc:
            return self._failed(items, clozes, exc)
        verdict_turns = []
        for index, (item, cloze) in enumerate(zip(items, clozes, strict=True)):
            first = cloze_turns.get(index)
            verdict = build_verdict_turn(cloze, self._frame_shown(item), item.context, first=first is None)
            if first is None:
                verdict_turns.append(LmmRequest(verdict, self._images(item), SYSTEM_PROMPT, True))
            else:
                history = (Turn(first.prompt, answers[index].text),)
                verdict_turns.append(LmmRequest(verdict, first.images, first.system, True, history))
        verdict_error: str | None = None
        try:
            verdicts: list[LmmResponse | None] = list(self._ask(verdict_turns))
        except LmmError as exc:  # the blanks are still evidence; the verdict is missing
            log.warning("LMM backend %s failed on the verdict turn: %s", self.backend.name, exc)
            verdicts, verdict_error = [None] * len(items), str(exc)
            if isinstance(exc, BudgetError):
                verdict_error = f"budget: {exc}"
        elapsed = time.perf_counter() - started
        return [
            self._score(
                item,
                cloze,
                answers.get(index),
                verdicts[index],
                verdict_error,
                elapsed,
                (index in answers) + (verdicts[index] is not None),
            )
            for index, (item, cloze) in enumerate(zip(items, clozes, strict=True))
        ]

    def _score(
        self,
        item: RerankItem,
        cloze: ClozeQuery,
        blanks_response: LmmResponse | None,
        verdict_response: LmmResponse | None,
        error: str | None,
        elapsed_s: float,
        requests: int,
    ) -> RerankOutcome:
        blanks_text = blanks_response.text if blanks_response is not None else ""
        verdict_text = verdict_response.text if verdict_response is not None else ""
        parsed = parse_answer(blanks_text, cloze)
        verdict_word = parse_answer(verdict_text, ClozeQuery(cloze.query, ())).verdict
        fills = [(b.text, parsed.answers.get(b.number), b.category) for b in cloze.blanks]
        agreements = self.agreement.score(fills)
        cloze_value = cloze_score(agreements)
        probability = verdict_probability(verdict_response.tokens) if verdict_response is not None else None
        source = "logprobs"
        if probability is None:
            if verdict_word is not None:
                probability, source = (1.0 if verdict_word == "yes" else 0.0), "text"
            else:
                source = "none"
        weights = self.config.weights
        fused = fuse(item.coarse_score, cloze_value, probability, weights)
        support = lmm_support(cloze_value, probability, weights)
        reason: str | None = None
        if support is None:
            state = Verification.UNVERIFIED
            if error is None:
                reason = UnverifiedReason.NO_ANSWER.value
            else:
                budget = error.startswith("budget: ")
                reason = (UnverifiedReason.BUDGET if budget else UnverifiedReason.ERROR).value
        elif fused >= self.config.accept_threshold and support >= self.config.support_threshold:
            state = Verification.VERIFIED
        else:
            state = Verification.REJECTED
        answered = [r for r in (blanks_response, verdict_response) if r is not None]
        if blanks_response is verdict_response:  # one step: one response for both
            answered = answered[:1]
        latency = sum(r.latency_s for r in answered)
        rationale: dict[str, Any] = {
            "query": cloze.query,
            "cloze": cloze.cloze,
            "scheme": self.config.cloze_scheme,
            "blanks": [
                {
                    "number": blank.number,
                    "masked": blank.text,
                    "category": blank.category.value,
                    "answer": parsed.answers.get(blank.number) or UNKNOWN,
                    "similarity": None if agreement.similarity is None else round(agreement.similarity, 4),
                    "agreement": None if agreement.agreement is None else round(agreement.agreement, 4),
                    "how": agreement.how,
                }
                for blank, agreement in zip(cloze.blanks, agreements, strict=True)
            ],
            "verdict": verdict_word,
            "verdict_probability": None if probability is None else round(probability, 4),
            "verdict_source": source,
            "verdict_context": item.context,
            "coarse_score": round(item.coarse_score, 4),
            "cloze_score": None if cloze_value is None else round(cloze_value, 4),
            "lmm_support": None if support is None else round(support, 4),
            "fused_score": round(fused, 4),
            "verification": state.value,
            "verification_reason": reason,
            "weights": weights.model_dump(),
            "parsed_json": parsed.structured,
            "raw_output": blanks_text[:RAW_OUTPUT_CHARS],
            "backend": self.backend.name,
            "agreement_embedder": self.agreement.kind,
            "requests": requests,
            "latency_s": round(latency or elapsed_s, 4),
        }
        if verdict_response is not blanks_response:
            rationale["raw_verdict_output"] = verdict_text[:RAW_OUTPUT_CHARS]
        if error:
            rationale["error"] = error
        return RerankOutcome(
            coarse_score=item.coarse_score,
            fused_score=fused,
            verification=state,
            reason=reason,
            cloze_score=cloze_value,
            verdict_probability=probability,
            verdict_source=source,
            support=support,
            requests=requests,
            rationale=rationale,
        )

    # --- live candidates ---------------------------------------------------------------------

    def item_for(self, candidate: Candidate) -> RerankItem:
        """The crop (and, when configured, the frame with the box) of a live candidate, and its context."""
        images: tuple[np.ndarray, ...] = (candidate.crop(self.config.crop_padding),)
        if self.config.include_frame:
            images += (frame_with_box(candidate.frame, candidate.box),)
        context = self.context_for(candidate) if self.context_for is not None else None
        return RerankItem(candidate.query_text, float(np.clip(candidate.score, 0.0, 1.0)), images, context)

    def rerank_candidates(self, candidates: Sequence[Candidate]) -> list[RerankOutcome]:
        """Re-rank live candidates and write the outcome into each (see :func:`apply_outcome`)."""
        outcomes = self.rerank_items([self.item_for(c) for c in candidates])
        for candidate, outcome in zip(candidates, outcomes, strict=True):
            apply_outcome(candidate, outcome)
        return outcomes


def apply_outcome(candidate: Candidate, outcome: RerankOutcome) -> None:
    """Write ``fused_score``, ``verified``, ``verification``, its reason and ``rationale`` into a candidate.

    A candidate the LMM never answered keeps ``fused_score`` None (the alert manager then ranks it
    by its coarse score) and gets the error in its rationale.
    """
    candidate.fused_score = outcome.fused_score
    candidate.verified = outcome.verified
    candidate.verification = outcome.verification.value
    candidate.verification_reason = outcome.reason
    rationale = dict(outcome.rationale)
    if outcome.error:
        rationale["error"] = outcome.error
    candidate.rationale = rationale
