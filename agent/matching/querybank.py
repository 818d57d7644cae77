"""The standing queries as embedding matrices, kept in step with the registry.

Query embeddings are a prompt ensemble (the query text in several templates, averaged and
normalised). They are cached in the registry's database per model manifest hash, so a restart does
not re-embed, and a new model or an edited text does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.matching.config import MatchingConfig
from agent.queries import Query, QueryRegistry

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """What the bank needs of a CLIP text encoder."""

    @property
    def manifest_hash(self) -> str: ...

    @property
    def logit_scale(self) -> float: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class QueryMatrix:
    """Enabled queries as arrays: row i of each array belongs to ``queries[i]``."""

    queries: list[Query]
    embeddings: np.ndarray  # (Q, D)
    normal_bank: np.ndarray  # (K, D): the distinct normal prompts
    normal_index: np.ndarray  # (Q, M): rows of normal_bank per query, -1 for padding
    thresholds: np.ndarray  # (Q,)
    text_hashes: list[str]

    @property
    def ids(self) -> list[int]:
        return [q.id for q in self.queries]


class QueryBank:
    """Embeds the registry's enabled queries and re-reads them within ``refresh_s`` of any change."""

    def __init__(
        self,
        registry: QueryRegistry,
        encoder: TextEncoder,
        config: MatchingConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.encoder = encoder
        self.config = config
        self._clock = clock
        self._revision: int | None = None
        self._checked_at = -float("inf")
        self._normal_cache: dict[str, np.ndarray] = {}
        self.matrix = self._empty()
        self.reloads = 0

    def _empty(self) -> QueryMatrix:
        return QueryMatrix(
            [],
            np.zeros((0, 1), np.float32),
            np.zeros((0, 1), np.float32),
            np.zeros((0, 1), np.int64),
            np.zeros((0,), np.float32),
            [],
        )

    def text_hash(self, query: Query) -> str:
        """Identifies what a cached embedding was made from: the text and the template ensemble."""
        payload = json.dumps([query.text, self.config.templates])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def refresh(self, force: bool = False) -> bool:
        """Reload when the registry changed (checked at most every ``refresh_s``); True if reloaded."""
        now = self._clock()
        if not force and now - self._checked_at < self.config.refresh_s:
            return False
        self._checked_at = now
        revision = self.registry.revision()
        if not force and revision == self._revision:
            return False
        self._revision = revision
        self.matrix = self._build(self.registry.list_queries(enabled_only=True))
        self.reloads += 1
        log.info("standing queries: %d enabled (registry revision %d)", len(self.matrix.queries), revision)
        return True

    def _query_embedding(self, query: Query, text_hash: str) -> np.ndarray:
        model_hash = self.encoder.manifest_hash
        cached = self.registry.cached_embedding(query.id, model_hash, text_hash)
        if cached is not None:
            return cached
        prompts = [template.format(query.text) for template in self.config.templates]
        embedding = _normalise(_normalise(self.encoder.embed_texts(prompts)).mean(axis=0))
        self.registry.store_embedding(query.id, model_hash, text_hash, embedding)
        return embedding

    def _normal_embeddings(self, prompts: list[str]) -> np.ndarray:
        missing = [p for p in prompts if p not in self._normal_cache]
        if missing:
            for prompt, vector in zip(missing, _normalise(self.encoder.embed_texts(missing)), strict=True):
                self._normal_cache[prompt] = vector
        return np.stack([self._normal_cache[p] for p in prompts])

    def _build(self, queries: list[Query]) -> QueryMatrix:
        if not queries:
            return self._empty()
        hashes = [self.text_hash(q) for q in queries]
        embeddings = np.stack([self._query_embedding(q, h) for q, h in zip(queries, hashes, strict=True)])
        normal_lists = [q.normal_prompts or self.config.normal_prompts for q in queries]
        distinct = sorted({prompt for prompts in normal_lists for prompt in prompts})
        row = {prompt: i for i, prompt in enumerate(distinct)}
        width = max(len(prompts) for prompts in normal_lists)
        index = np.full((len(queries), width), -1, np.int64)
        for i, prompts in enumerate(normal_lists):
            index[i, : len(prompts)] = [row[p] for p in prompts]
        bank = self._normal_embeddings(distinct)
        thresholds = np.array(
            [q.threshold if q.threshold is not None else self.config.default_threshold for q in queries],
            np.float32,
        )
        return QueryMatrix(queries, embeddings, bank, index, thresholds, hashes)
