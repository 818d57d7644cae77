"""LMM backends behind one interface (:class:`LmmBackend`), one per file, built by ``type``."""

from agent.rerank.backends.base import (
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
    "GeneratedToken",
    "LmmBackend",
    "LmmError",
    "LmmRequest",
    "LmmResponse",
    "RequestGate",
    "Turn",
    "build_backend",
]
