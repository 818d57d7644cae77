"""The cue vocabulary, and the mapping of a standing query's text onto it.

Each behaviour cue is described by a few short phrases. A query is embedded by the offline sentence
embedder (all-MiniLM-L6-v2; and by the CLIP text encoder when one is configured) and compared with
every phrase of every cue and with phrases of ordinary behaviour ("a person walking"). The query maps
to the cue whose best phrase is most similar when that similarity reaches ``min_similarity`` and beats
the ordinary phrases by ``min_margin``; otherwise it maps to no cue and says why. The confidence is the
similarity rescaled from [min_similarity, 1] to [0.5, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.queries.language import language_problem

CUE_PHRASES: dict[str, tuple[str, ...]] = {
    "upright": ("a person standing upright", "someone standing", "a person walking upright"),
    "crouching": (
        "a person crouching",
        "someone squatting down",
        "a person bending over",
        "someone kneeling",
    ),
    "lying": ("a person lying on the floor", "someone lying down", "a person lying on the ground"),
    "fall": (
        "a person falling down",
        "someone falls to the ground",
        "a person collapsing",
        "someone tripping",
    ),
    "running": ("a person running", "someone running away", "a man sprinting", "someone fleeing"),
    "still_long": (
        "someone standing still for a long time",
        "a person loitering",
        "someone lingering in one place",
        "a person waiting without moving",
    ),
    "arms_raised": ("a person with arms raised", "someone raising both hands", "hands up", "a person waving"),
    "ground_long": (
        "a person lying on the ground for a long time",
        "someone motionless on the floor",
        "a person who has been down for a long time",
        "someone unconscious on the ground",
    ),
}
"""Phrases per cue, as a person would word a standing query about it."""

CUES: tuple[str, ...] = tuple(CUE_PHRASES)

ORDINARY_PHRASES: tuple[str, ...] = (
    "a person",
    "people on a street",
    "a person carrying a bag",
    "a person wearing a jacket",
    "a car",
    "a bicycle",
    "a person talking on a phone",
)
"""Descriptions that are not about posture or motion: a query closest to these maps to no cue."""


@dataclass(frozen=True)
class CueMapping:
    """How one query maps onto the cue vocabulary.

    Attributes:
        cue: the cue, or None when the query describes none.
        confidence: in [0, 1]; 0 when unmapped.
        similarity: cosine of the query and the cue's closest phrase (the best cue's, when unmapped).
        phrase: that phrase.
        reason: why the query maps to no cue (None when it maps).
        encoders: which text encoders voted (``"minilm"``, ``"clip"``).
    """

    cue: str | None
    confidence: float
    similarity: float
    phrase: str
    reason: str | None = None
    encoders: tuple[str, ...] = ("minilm",)

    def to_dict(self) -> dict[str, object]:
        return {
            "cue": self.cue,
            "confidence": round(self.confidence, 3),
            "similarity": round(self.similarity, 3),
            "phrase": self.phrase,
            "reason": self.reason,
            "encoders": list(self.encoders),
        }


TextEmbed = Callable[[list[str]], np.ndarray]


class CueVocabulary:
    """Maps query texts to cues with one or more text encoders (their similarities are averaged).

    Args:
        encoders: name -> function embedding texts to L2-normalised rows.
        min_similarity: a query's best cue phrase must be at least this similar.
        min_margin: ... and beat the best ordinary phrase by this much.
    """

    def __init__(
        self, encoders: dict[str, TextEmbed], min_similarity: float = 0.5, min_margin: float = 0.05
    ) -> None:
        if not encoders:
            raise ValueError("at least one text encoder is needed")
        self.encoders = encoders
        self.min_similarity = min_similarity
        self.min_margin = min_margin
        self._phrases = [(cue, phrase) for cue, phrases in CUE_PHRASES.items() for phrase in phrases]
        texts = [phrase for _, phrase in self._phrases] + list(ORDINARY_PHRASES)
        self._banks = {name: _unit(embed(texts)) for name, embed in encoders.items()}
        self._cache: dict[str, CueMapping] = {}

    def add_encoder(self, name: str, embed: TextEmbed) -> None:
        """Let another text encoder (CLIP's) vote on every mapping from now on."""
        texts = [phrase for _, phrase in self._phrases] + list(ORDINARY_PHRASES)
        self._banks[name] = _unit(embed(texts))
        self.encoders = {**self.encoders, name: embed}
        self._cache.clear()

    def _similarities(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), phrases + ordinary) cosines averaged over the encoders."""
        total = None
        for name, embed in self.encoders.items():
            cosines = _unit(embed(list(texts))) @ self._banks[name].T
            total = cosines if total is None else total + cosines
        assert total is not None
        return total / len(self.encoders)

    def map(self, text: str) -> CueMapping:
        """The cue a query text describes (cached per text)."""
        cached = self._cache.get(text)
        if cached is None:
            cached = self._cache[text] = self.map_many([text])[0]
        return cached

    def map_many(self, texts: Sequence[str]) -> list[CueMapping]:
        if not texts:
            return []
        similarities = self._similarities(texts)
        count = len(self._phrases)
        results = []
        for text, row in zip(texts, similarities, strict=True):
            best = int(np.argmax(row[:count]))
            similarity = float(row[best])
            ordinary = float(row[count:].max()) if len(row) > count else -1.0
            cue, phrase = self._phrases[best]
            reason = None
            if similarity < self.min_similarity:
                floor = self.min_similarity
                reason = f"closest cue phrase {phrase!r} is only {similarity:.2f} similar (< {floor})"
            elif similarity - ordinary < self.min_margin:
                reason = (
                    f"as close to ordinary behaviour ({ordinary:.2f}) as to {phrase!r} ({similarity:.2f})"
                )
            if reason is not None:
                language = language_problem(text)  # the likeliest cause, named first
                reason = reason if language is None else f"{language} ({reason})"
                results.append(CueMapping(None, 0.0, similarity, phrase, reason, tuple(self.encoders)))
                continue
            confidence = 0.5 + 0.5 * (similarity - self.min_similarity) / max(1.0 - self.min_similarity, 1e-6)
            results.append(
                CueMapping(
                    cue, float(np.clip(confidence, 0.0, 1.0)), similarity, phrase, None, tuple(self.encoders)
                )
            )
        return results


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
