"""Standing queries a config registers at start (``queries:``), e.g. the offline demo's."""

from __future__ import annotations

import logging

from pydantic import Field, field_validator

from agent.config_rules import StrictConfigModel
from agent.queries.registry import Query, QueryError, QueryRegistry, validate_query_text

log = logging.getLogger(__name__)


class StartupQuery(StrictConfigModel):
    """One query to register at start unless a query with the same text is already registered."""

    text: str
    severity: str = Field("warning", pattern="^(info|warning|critical)$")
    threshold: float | None = Field(None, gt=0, lt=1)
    cooldown_s: float | None = Field(None, ge=0, description="None: the agent's alerts.cooldown_s")
    cameras: list[str] | None = None

    @field_validator("text")
    @classmethod
    def _text_as_the_registry_takes_it(cls, text: str) -> str:
        """The registry's own check (length, control characters), so the YAML fails at load."""
        try:
            return validate_query_text(text)
        except QueryError as exc:
            raise ValueError(str(exc)) from exc


def register_startup_queries(registry: QueryRegistry, queries: list[StartupQuery]) -> list[Query]:
    """Add each configured query whose text is not registered yet (an operator's edits are kept)."""
    known = {query.text for query in registry.list_queries()}
    added = []
    for item in queries:
        if item.text.strip() in known:
            continue
        added.append(
            registry.add(
                item.text,
                cameras=item.cameras,
                threshold=item.threshold,
                severity=item.severity,
                cooldown_s=item.cooldown_s,
            )
        )
        log.info("registered standing query %d from the config: %r", added[-1].id, item.text)
    return added
