"""Offline benchmarks: PAB-format text-to-image retrieval with IRRA's metrics, coarse and re-ranked."""

from agent.evaluation.metrics import RankResult, RetrievalMetrics, rank, retrieval_metrics
from agent.evaluation.pab import PabDataset, PabFormatError, load_pab, load_scores
from agent.evaluation.runner import PabReport, embed_pab, evaluate_pab

__all__ = [
    "PabDataset",
    "PabFormatError",
    "PabReport",
    "RankResult",
    "RetrievalMetrics",
    "embed_pab",
    "evaluate_pab",
    "load_pab",
    "load_scores",
    "rank",
    "retrieval_metrics",
]
