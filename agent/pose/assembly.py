"""Builds the pose stage for the agent: MoveNet, the cue mappings, and how queries are scored.

Kept apart from ``agent/service.py`` (the wiring) so that the service only asks for the pieces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.estimator import PoseEstimator
from agent.pose.phrase_bank import packaged_vectors
from agent.pose.querycues import QueryCues
from agent.pose.sentence import OnDemandSentenceEmbedder
from agent.pose.text_cache import text_cache_path
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry

log = logging.getLogger(__name__)


@dataclass
class PoseStage:
    """The pose analyser, the sentence embedder and the queries' cue mappings."""

    analyzer: PoseAnalyzer
    vocabulary: CueVocabulary
    cues: QueryCues
    sentence: OnDemandSentenceEmbedder | None = None

    def release_sentence_model(self) -> None:
        """The start's mappings are made: drop all-MiniLM-L6-v2 (reloaded for a new query text)."""
        if self.sentence is not None:
            self.sentence.release()

    def mapping_view(self, text: str) -> dict[str, Any]:
        """A query text's mapping as the API shows it."""
        return self.vocabulary.map(text).to_dict()

    def startup_message(self, clip: bool) -> str:
        """Which queries are evaluated from cues (and how), and which are not."""
        self.cues.refresh(force=True)
        mapped = [f"{q.id} {q.text!r} -> {m.cue} ({m.confidence:.2f})" for q, m in self.cues.mapped()]
        unmapped = [f"{q.id} {q.text!r} ({m.reason})" for q, m in self.cues.unmapped()]
        if clip:
            head = "pose cues fused into CLIP scores for queries " + ("; ".join(mapped) or "none")
            return head + (f"; CLIP alone for {'; '.join(unmapped)}" if unmapped else "")
        head = "no CLIP model: standing queries evaluated from pose cues alone: " + (
            "; ".join(mapped) or "none"
        )
        tail = (
            f". Not evaluated (they map to no cue; they need CLIP): {'; '.join(unmapped)}" if unmapped else ""
        )
        return head + tail


def build_pose_stage(
    config: PoseConfig,
    registry: QueryRegistry,
    state_dir: Path,
    clip_text: Callable[[list[str]], np.ndarray] | None = None,
) -> PoseStage:
    """MoveNet (converted on first start into ``<state_dir>/models/pose`` when no ``model_dir`` is
    set and none is there), all-MiniLM-L6-v2, and the query mappings.

    MiniLM's embeddings are kept in ``<state_dir>/cache/text-embeddings.sqlite``: a start whose cue
    phrases and query texts were all embedded before does not load the model.

    ``clip_text`` (the CLIP text encoder, when one is configured) votes on the mappings with MiniLM.
    """
    model_dir = config.model_dir or Path(state_dir) / "models" / "pose"
    analyzer = PoseAnalyzer(config, PoseEstimator(config, model_dir=model_dir))
    sentence = OnDemandSentenceEmbedder(cache_path=text_cache_path(state_dir), packaged=packaged_vectors)
    encoders: dict[str, Callable[[list[str]], np.ndarray]] = {"minilm": sentence}
    if clip_text is not None:
        encoders["clip"] = clip_text
    vocabulary = CueVocabulary(encoders, config.min_similarity, config.min_margin)
    return PoseStage(analyzer, vocabulary, QueryCues(registry, vocabulary), sentence)
