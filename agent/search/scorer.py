"""The live matcher's calibrated score for any text: the query in the same prompt templates, against
the same normal prompts, at the model's logit scale (so a search ranks as live matching would)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from agent.matching.config import MatchingConfig
from agent.matching.querybank import TextEncoder
from agent.matching.scoring import calibrated_scores

CACHE_SIZE = 256


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class TextScorer:
    """Scores crop embeddings against a text the way the matcher scores a standing query.

    Text embeddings are cached (``cache_size`` texts, least recently used out first), shared by the
    API's request threads: a call takes what it needs from the cache under the lock and works on its
    own copies, so another request's eviction cannot take a text it is using.
    """

    def __init__(self, encoder: TextEncoder, config: MatchingConfig, cache_size: int = CACHE_SIZE) -> None:
        self.encoder = encoder
        self.config = config
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _texts(self, texts: list[str]) -> np.ndarray:
        """The normalised embeddings of ``texts``, one row each, in order."""
        wanted = list(dict.fromkeys(texts))
        with self._lock:
            found = {text: self._cache[text] for text in wanted if text in self._cache}
            for text in found:
                self._cache.move_to_end(text)  # the normal prompts, used by every call, stay
        missing = [text for text in wanted if text not in found]
        if missing:  # encoded outside the lock: other requests go on meanwhile
            vectors = _normalise(np.asarray(self.encoder.embed_texts(missing), np.float32))
            found.update(zip(missing, vectors, strict=True))
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[text] for text in texts])

    def query_vector(self, text: str) -> np.ndarray:
        """The query's embedding: the normalised mean of the text in every template."""
        prompts = [template.format(text) for template in self.config.templates]
        return _normalise(self._texts(prompts).mean(axis=0))

    def scorer(
        self, text: str, normal_prompts: list[str] | None = None
    ) -> Callable[[np.ndarray], np.ndarray]:
        """A function from (N, D) crop embeddings to their (N,) calibrated probabilities for ``text``."""
        query = self.query_vector(text)[None]
        normals = self._texts(list(normal_prompts or self.config.normal_prompts))
        index = np.arange(len(normals), dtype=np.int64)[None]
        scale = float(self.encoder.logit_scale)

        def score(embeddings: np.ndarray) -> np.ndarray:
            probability, _ = calibrated_scores(embeddings, query, normals, index, scale)
            return probability[:, 0]

        return score


def threshold_for_rate(scores: list[float], hours: float, alerts_per_hour: float) -> float | None:
    """The threshold at which ``scores`` (one per track) would have given ``alerts_per_hour``.

    Halfway between the score of the last track that would alert and the next one; None without
    tracks. One track counts as one alert (an episode per person, as the alert manager keeps).
    """
    if not scores or hours <= 0:
        return None
    ordered = sorted(scores, reverse=True)
    wanted = max(1, round(alerts_per_hour * hours))
    if wanted >= len(ordered):
        return max(1e-4, ordered[-1] - 1e-4)
    return min(0.9999, max(1e-4, (ordered[wanted - 1] + ordered[wanted]) / 2))
