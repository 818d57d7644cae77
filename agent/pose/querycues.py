"""The standing queries' cue mappings, kept in step with the registry (like the CLIP query bank)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent.pose.config import PoseConfig
from agent.pose.vocabulary import CueMapping, CueVocabulary
from agent.queries import Query, QueryRegistry

log = logging.getLogger(__name__)


class QueryCues:
    """Maps every enabled query to a cue and re-reads the registry within ``refresh_s`` of a change.

    Mappings are cached per text, so only new or edited queries are embedded again.
    """

    def __init__(
        self,
        registry: QueryRegistry,
        vocabulary: CueVocabulary,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.vocabulary = vocabulary
        self.refresh_s = refresh_s
        self._clock = clock
        self._revision: int | None = None
        self._checked_at = -float("inf")
        self.queries: list[Query] = []
        self.mappings: dict[int, CueMapping] = {}

    def refresh(self, force: bool = False) -> bool:
        """Reload when the registry changed (checked at most every ``refresh_s``); True if reloaded."""
        now = self._clock()
        if not force and now - self._checked_at < self.refresh_s:
            return False
        self._checked_at = now
        revision = self.registry.revision()
        if not force and revision == self._revision:
            return False
        self._revision = revision
        self.queries = self.registry.list_queries(enabled_only=True)
        self.mappings = {q.id: self.vocabulary.map(q.text) for q in self.queries}
        return True

    def mapped(self) -> list[tuple[Query, CueMapping]]:
        """Enabled queries that map to a cue, in registry order."""
        return [(q, self.mappings[q.id]) for q in self.queries if self.mappings[q.id].cue is not None]

    def unmapped(self) -> list[tuple[Query, CueMapping]]:
        """Enabled queries that map to no cue, with the reason."""
        return [(q, self.mappings[q.id]) for q in self.queries if self.mappings[q.id].cue is None]

    def describe(self) -> str:
        """One line per query: which cue it maps to, with what confidence, or why none."""
        lines = []
        for query in self.queries:
            mapping = self.mappings[query.id]
            if mapping.cue is not None:
                lines.append(
                    f"query {query.id} {query.text!r} -> cue {mapping.cue} ({mapping.confidence:.2f})"
                )
            else:
                lines.append(f"query {query.id} {query.text!r} -> no cue ({mapping.reason})")
        return "; ".join(lines)


def offline_mapping(text: str, config: PoseConfig | None = None) -> dict[str, object]:
    """The cue mapping of one query text by the offline sentence embedder, for the CLI.

    Never raises: without the sentence model the mapping says why there is none.
    """
    from agent.pose.sentence import SentenceEmbedder, SentenceModelError

    config = config or PoseConfig()
    try:
        embedder = SentenceEmbedder()
    except SentenceModelError as exc:
        return CueMapping(None, 0.0, 0.0, "", str(exc), ()).to_dict()
    vocabulary = CueVocabulary({"minilm": embedder.embed}, config.min_similarity, config.min_margin)
    return vocabulary.map(text).to_dict()
