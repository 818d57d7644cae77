"""One re-ranking step: mask the query, ask the LMM, score agreement and verdict, fuse with the coarse score.

Used by the live :class:`~agent.rerank.service.RerankService` (on candidates) and by the PAB
benchmark (on gallery images), through :meth:`Reranker.rerank_items`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from agent.rerank.backends.base import LmmBackend, LmmError, LmmRequest, LmmResponse
from agent.rerank.config import RerankConfig
from agent.rerank.fusion import AgreementScorer, TextEmbedder, cloze_score, fuse
from agent.rerank.masker import CachedMasker, ClozeQuery, Masker, RuleMasker
from agent.rerank.prompt import SYSTEM_PROMPT, UNKNOWN, build_cloze_prompt, parse_answer, verdict_probability
from agent.types import Candidate

log = logging.getLogger(__name__)

FRAME_MAX_SIDE_PX = 1024
RAW_OUTPUT_CHARS = 500
BOX_COLOUR_BGR = (0, 255, 0)


@dataclass(frozen=True)
class RerankItem:
    """One (query, image) pair to re-rank.

    Attributes:
        query_text: the natural-language query.
        coarse_score: the coarse retriever's score mapped into [0, 1].
        images: BGR ``uint8`` images; the first is the person crop, a second the frame with the box.
    """

    query_text: str
    coarse_score: float
    images: tuple[np.ndarray, ...]


@dataclass
class RerankOutcome:
    """The re-ranker's result for one item.

    Attributes:
        fused_score: fused score in [0, 1], or None when the backend failed.
        verified: ``fused_score >= accept_threshold``, or None when the backend failed.
        cloze_score: mean blank agreement in [0, 1] (UNKNOWN counts 0.5).
        verdict_probability: P(yes) in [0, 1] or None when no verdict could be read.
        verdict_source: "logprobs", "text" or "none".
        rationale: blanks, answers, agreements, verdict and raw output: the alert's evidence.
        error: why the backend gave no answer, or None.
    """

    coarse_score: float
    fused_score: float | None
    verified: bool | None
    cloze_score: float | None = None
    verdict_probability: float | None = None
    verdict_source: str = "none"
    rationale: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


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
    """Re-ranks items with a cloze prompt through an LMM backend.

    Args:
        config: the re-ranking config (weights, threshold, masker, frame option).
        backend: the LMM; :meth:`rerank_items` calls it with up to ``backend.max_batch_size`` items.
        text_embedder: texts -> L2-normalised embeddings (the CLIP text encoder); None: lexical.
        masker: overrides the masker chosen by ``config.masker``.
    """

    def __init__(
        self,
        config: RerankConfig,
        backend: LmmBackend,
        text_embedder: TextEmbedder | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
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
        """Re-rank items in batches of the backend's size; a failed batch yields outcomes with ``error``."""
        outcomes: list[RerankOutcome] = []
        step = max(1, self.backend.max_batch_size)
        for first in range(0, len(items), step):
            outcomes.extend(self._rerank_batch(items[first : first + step]))
        return outcomes

    def _rerank_batch(self, items: Sequence[RerankItem]) -> list[RerankOutcome]:
        clozes = [self.masker.mask(item.query_text) for item in items]
        include_frame = self.config.include_frame
        requests = [
            LmmRequest(
                prompt=build_cloze_prompt(cloze, include_frame and len(item.images) > 1),
                images=item.images if include_frame else item.images[:1],
                system=SYSTEM_PROMPT,
                json_output=True,
            )
            for item, cloze in zip(items, clozes, strict=True)
        ]
        started = time.perf_counter()
        try:
            responses = self.backend.generate(requests)
            if len(responses) != len(requests):
                raise LmmError(f"backend answered {len(responses)} of {len(requests)} requests")
        except LmmError as exc:
            log.warning("LMM backend %s failed on %d item(s): %s", self.backend.name, len(items), exc)
            return [
                RerankOutcome(item.coarse_score, None, None, rationale={"query": q.query}, error=str(exc))
                for item, q in zip(items, clozes, strict=True)
            ]
        elapsed = time.perf_counter() - started
        return [
            self._score(item, cloze, response, elapsed)
            for item, cloze, response in zip(items, clozes, responses, strict=True)
        ]

    def _score(
        self, item: RerankItem, cloze: ClozeQuery, response: LmmResponse, elapsed_s: float
    ) -> RerankOutcome:
        parsed = parse_answer(response.text, cloze)
        fills = [(b.text, parsed.answers.get(b.number), b.category) for b in cloze.blanks]
        agreements = self.agreement.score(fills)
        cloze_value = cloze_score(agreements)
        probability = verdict_probability(response.tokens)
        source = "logprobs"
        if probability is None:
            if parsed.verdict is not None:
                probability, source = (1.0 if parsed.verdict == "yes" else 0.0), "text"
            else:
                source = "none"
        fused = fuse(item.coarse_score, cloze_value, probability, self.config.weights)
        rationale: dict[str, Any] = {
            "query": cloze.query,
            "cloze": cloze.cloze,
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
            "verdict": parsed.verdict,
            "verdict_probability": None if probability is None else round(probability, 4),
            "verdict_source": source,
            "coarse_score": round(item.coarse_score, 4),
            "cloze_score": round(cloze_value, 4),
            "fused_score": round(fused, 4),
            "weights": self.config.weights.model_dump(),
            "parsed_json": parsed.structured,
            "raw_output": response.text[:RAW_OUTPUT_CHARS],
            "backend": self.backend.name,
            "agreement_embedder": self.agreement.kind,
            "latency_s": round(response.latency_s or elapsed_s, 4),
        }
        return RerankOutcome(
            coarse_score=item.coarse_score,
            fused_score=fused,
            verified=fused >= self.config.accept_threshold,
            cloze_score=cloze_value,
            verdict_probability=probability,
            verdict_source=source,
            rationale=rationale,
        )

    # --- live candidates ---------------------------------------------------------------------

    def item_for(self, candidate: Candidate) -> RerankItem:
        """The crop (and, when configured, the frame with the box) of a live candidate."""
        images: tuple[np.ndarray, ...] = (candidate.crop(self.config.crop_padding),)
        if self.config.include_frame:
            images += (frame_with_box(candidate.frame, candidate.box),)
        return RerankItem(candidate.query_text, float(np.clip(candidate.score, 0.0, 1.0)), images)

    def rerank_candidates(self, candidates: Sequence[Candidate]) -> list[RerankOutcome]:
        """Re-rank live candidates and write ``fused_score``, ``verified`` and ``rationale`` into each.

        A candidate whose backend call failed keeps ``fused_score``/``verified`` None (the alert
        manager then ranks it by its coarse score) and gets the error in its rationale.
        """
        outcomes = self.rerank_items([self.item_for(c) for c in candidates])
        for candidate, outcome in zip(candidates, outcomes, strict=True):
            candidate.fused_score = outcome.fused_score
            candidate.verified = outcome.verified
            rationale = dict(outcome.rationale)
            if outcome.error:
                rationale["error"] = outcome.error
            candidate.rationale = rationale
        return outcomes
