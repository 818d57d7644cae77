"""AnomalyLMM re-ranking: cloze prompts to a (quantized) LMM, blank agreement and score fusion.

The live entry point is :class:`RerankService`, the re-ranking stage (under a call budget); the benchmark
uses :class:`Reranker` directly. Backends live in :mod:`agent.rerank.backends`, one per file.

Only the config is imported eagerly, so that ``agent.config`` can nest :class:`RerankConfig`
without loading OpenCV; the other names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.lazy_exports import lazy_exports
from agent.rerank.config import (
    FusionWeights,
    OpenAIBackendConfig,
    RerankConfig,
    TransformersBackendConfig,
    load_rerank_config,
)

if TYPE_CHECKING:
    from agent.rerank.masker import Blank, ClozeQuery, RuleMasker
    from agent.rerank.reranker import Reranker, RerankItem, RerankOutcome, UnverifiedReason, Verification
    from agent.rerank.service import RerankService, RerankStats

_LAZY = {
    "Blank": "agent.rerank.masker",
    "ClozeQuery": "agent.rerank.masker",
    "RuleMasker": "agent.rerank.masker",
    "Reranker": "agent.rerank.reranker",
    "RerankItem": "agent.rerank.reranker",
    "RerankOutcome": "agent.rerank.reranker",
    "UnverifiedReason": "agent.rerank.reranker",
    "Verification": "agent.rerank.reranker",
    "RerankService": "agent.rerank.service",
    "RerankStats": "agent.rerank.service",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "Blank",
    "ClozeQuery",
    "FusionWeights",
    "OpenAIBackendConfig",
    "RerankConfig",
    "RerankItem",
    "RerankOutcome",
    "RerankService",
    "RerankStats",
    "Reranker",
    "RuleMasker",
    "TransformersBackendConfig",
    "UnverifiedReason",
    "Verification",
    "load_rerank_config",
]
