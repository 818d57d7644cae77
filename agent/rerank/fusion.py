"""Knowledge-aware re-ranking: agreement of each filled blank with the masked words, and score fusion.

Agreement of one blank, in [0, 1]:

* the LMM answered UNKNOWN (or nothing readable): no agreement value; the blank carries no weight
  (the cloze score is the mean over the answered blanks, and None when none was answered);
* the answer has the same base form as the masked words, or is in the same synonym group
  ("fell" for "falling", "bike" for "bicycle", "grey" for "gray"): 1;
* otherwise the text-embedding similarity ``s`` of answer and masked words, calibrated against how
  similar the masked words are to the other words of their category: with ``b`` the mean
  similarity of the masked words to up to :data:`BASELINE_WORDS` listed words of the same category,
  agreement = clip((s - b) / (1 - b), 0, 1). So "blue" for "red" (about as close as any two
  colours) scores near 0, and "crimson" for "red" well above it, whatever the embedder's scale.

The embedder is the CLIP text encoder's ``embed_texts`` when one is given; without one,
:class:`LexicalEmbedder` (hashed character trigrams) stands in, which sees spelling, not meaning.

The fused score is the weighted mean ``(wc * coarse + wz * cloze + wv * verdict) / (wc + wz + wv)``
over the terms that exist, all in [0, 1], so it is in [0, 1] too: a cloze score with no answered
blank and a verdict the LMM did not give (or that could not be read) are left out and the weights
renormalised; with neither, the fused score is the coarse score. Silence is never support.

The LMM's own support (:func:`lmm_support`) is the same weighted mean over the cloze score and the
verdict alone: what the LMM said, without the coarse score. None when it said nothing readable.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.rerank.config import FusionWeights
from agent.rerank.lexicon import Category, lemma, synonyms, vocabulary, words

TextEmbedder = Callable[[list[str]], np.ndarray]
"""Texts -> (N, D) float32 L2-normalised embeddings (the CLIP text encoder's ``embed_texts``)."""

BASELINE_WORDS = 24
_STOPWORDS = frozenset(words("a an the his her their its my your our this that some"))


class LexicalEmbedder:
    """Hashed character-trigram count vectors, L2-normalised: an offline stand-in for a text encoder.

    Words are padded with ``#`` so that prefixes and suffixes count ("#re", "ed#"). The cosine of two
    such vectors measures shared spelling: 1 for the same word, high for inflections, near 0 for
    unrelated words. It knows no synonyms; give the CLIP text encoder for meaning.

    Args:
        dimensions: vector size; trigrams are hashed (CRC-32) into this many buckets.
    """

    def __init__(self, dimensions: int = 2048) -> None:
        self.dimensions = dimensions

    def __call__(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimensions), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                padded = f"#{word}#"
                for i in range(len(padded) - 2):
                    vectors[row, zlib.crc32(padded[i : i + 3].encode()) % self.dimensions] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class BlankAgreement:
    """How one filled blank compares with its masked words.

    Attributes:
        similarity: cosine of the answer and masked-word embeddings (None for UNKNOWN or exact).
        baseline: mean cosine of the masked words to other words of the category (None if unused).
        agreement: in [0, 1], or None for UNKNOWN (which counts as neutral, 0.5).
        how: "unknown", "same word", "synonym" or "embedding".
    """

    similarity: float | None
    baseline: float | None
    agreement: float | None
    how: str


def _normalise(text: str) -> str:
    words = [w for w in text.lower().replace("-", " ").split() if w not in _STOPWORDS]
    return " ".join(lemma(w) for w in words) if len(words) > 1 else (lemma(words[0]) if words else "")


class AgreementScorer:
    """Scores blank fills against masked words with a text embedder; caches embeddings (thread-safe).

    Args:
        embedder: texts -> L2-normalised embeddings; None uses :class:`LexicalEmbedder`.
        cache_size: embeddings kept in memory (one per distinct word or phrase).
    """

    def __init__(self, embedder: TextEmbedder | None = None, cache_size: int = 8192) -> None:
        self.embedder: TextEmbedder = embedder if embedder is not None else LexicalEmbedder()
        self.kind = "text-encoder" if embedder is not None else "lexical-trigram"
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = np.asarray(self.embedder(list(missing)), np.float32)
            if vectors.shape[0] != len(missing):
                raise ValueError(f"text embedder returned {vectors.shape[0]} rows for {len(missing)} texts")
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            result = {}
            for text in texts:
                vector = self._cache.get(text)
                if vector is None:  # evicted between the two locks by a concurrent caller
                    vector = np.asarray(self.embedder([text]), np.float32)[0]
                    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
                result[text] = vector
            return result

    @staticmethod
    def _baseline_words(masked: str, category: Category) -> list[str]:
        exclude = synonyms(masked) | {_normalise(masked)}
        return [w for w in vocabulary(category) if w not in exclude][:BASELINE_WORDS]

    def score(self, pairs: Sequence[tuple[str, str | None, Category]]) -> list[BlankAgreement]:
        """Agreement of each (masked words, answer or None, category), embedding all texts at once."""
        results: list[BlankAgreement | None] = []
        needed: list[str] = []
        for masked, answer, category in pairs:
            if answer is None:
                results.append(BlankAgreement(None, None, None, "unknown"))
                continue
            masked_norm, answer_norm = _normalise(masked), _normalise(answer)
            if masked_norm and masked_norm == answer_norm:
                results.append(BlankAgreement(None, None, 1.0, "same word"))
            elif answer_norm in synonyms(masked_norm) and answer_norm:
                results.append(BlankAgreement(None, None, 1.0, "synonym"))
            else:
                results.append(None)
                needed += [masked_norm or masked.lower(), answer_norm or answer]
                needed += self._baseline_words(masked_norm, category)
        vectors = self._embed(needed) if needed else {}
        out: list[BlankAgreement] = []
        for result, (masked, answer, category) in zip(results, pairs, strict=True):
            if result is not None:
                out.append(result)
                continue
            assert answer is not None
            masked_norm, answer_norm = _normalise(masked), _normalise(answer)
            masked_vector = vectors[masked_norm or masked.lower()]
            similarity = float(masked_vector @ vectors[answer_norm or answer])
            others = self._baseline_words(masked_norm, category)
            baseline = float(np.mean([masked_vector @ vectors[w] for w in others])) if others else 0.0
            agreement = float(np.clip((similarity - baseline) / max(1.0 - baseline, 1e-6), 0.0, 1.0))
            out.append(BlankAgreement(similarity, baseline, agreement, "embedding"))
        return out


def cloze_score(agreements: Sequence[BlankAgreement]) -> float | None:
    """Mean agreement over the answered blanks; None when no blank was answered (or there are none)."""
    answered = [a.agreement for a in agreements if a.agreement is not None]
    if not answered:
        return None
    return float(np.mean(answered))


def _weighted_mean(terms: Sequence[tuple[float, float | None]]) -> float | None:
    present = [(weight, value) for weight, value in terms if value is not None and weight > 0]
    total = sum(weight for weight, _ in present)
    if total <= 0:
        return None
    return float(np.clip(sum(weight * value for weight, value in present) / total, 0.0, 1.0))


def lmm_support(cloze: float | None, verdict: float | None, weights: FusionWeights) -> float | None:
    """What the LMM said, fused: cloze agreement and verdict probability over those given; None if neither."""
    return _weighted_mean([(weights.cloze, cloze), (weights.verdict, verdict)])


def fuse(coarse: float, cloze: float | None, verdict: float | None, weights: FusionWeights) -> float:
    """Weighted mean of the coarse score and whatever the LMM answered (renormalised), in [0, 1].

    A missing cloze score or verdict carries no weight; with neither the result is the coarse score.
    """
    fused = _weighted_mean([(weights.coarse, coarse), (weights.cloze, cloze), (weights.verdict, verdict)])
    return float(np.clip(coarse, 0.0, 1.0)) if fused is None else fused
