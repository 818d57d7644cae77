"""LMM backends behind one interface (:class:`LmmBackend`), one per file, built by ``type``."""

from agent.rerank.backends.base import (
    BudgetError,
    GeneratedToken,
    LmmBackend,
    LmmError,
    LmmRequest,
    LmmResponse,
    RequestGate,
    Turn,
    build_backend,
)

__all__ = [
    "BudgetError",
    "GeneratedToken",
    "LmmBackend",
    "LmmError",
    "LmmRequest",
    "LmmResponse",
    "RequestGate",
    "Turn",
    "build_backend",
]
