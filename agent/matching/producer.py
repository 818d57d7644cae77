"""What the sample producers (the CLIP matcher, the cue matcher) share: their scored queries.

A producer only produces samples; the decision core pools them. When the producer's query columns
change (a query added, edited, disabled), the next frame it sees carries the new columns (query id,
text hash) in its record, so the core, live or in a replay, adopts them at the same frame.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.queries import Query


class ScoredQueries:
    """The producer's current columns, and the ``columns`` key of the next record after a change."""

    def __init__(self) -> None:
        self.queries: list[Query] = []
        self.hashes: list[str] = []
        self._by_id: dict[int, Query] = {}
        self._announce = True

    def set(self, queries: Sequence[Query], hashes: Sequence[str]) -> None:
        self.queries, self.hashes = list(queries), list(hashes)
        self._by_id = {q.id: q for q in self.queries}
        self._announce = True

    def query(self, query_id: int) -> Query | None:
        """A scored query by id (the decision core's lookup)."""
        return self._by_id.get(query_id)

    def all(self) -> list[Query]:
        return list(self.queries)

    def announce(self) -> list[list[object]] | None:
        """The ``columns`` value for the next record when they changed since the last call, else None."""
        if not self._announce:
            return None
        self._announce = False
        return [[q.id, h] for q, h in zip(self.queries, self.hashes, strict=True)]
