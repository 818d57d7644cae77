"""Standing natural-language queries: the SQLite registry the CLI, the API and the agent share."""

from agent.queries.registry import (
    Query,
    QueryError,
    QueryNotFoundError,
    QueryRegistry,
    QueryUpdate,
    validate_query_text,
)

__all__ = ["Query", "QueryError", "QueryNotFoundError", "QueryRegistry", "QueryUpdate", "validate_query_text"]
