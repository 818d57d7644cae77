"""Text-to-image retrieval metrics exactly as the IRRA codebase's ``rank()`` computes them.

For a (queries x gallery) similarity matrix, each row is ordered by ``torch.argsort(descending=True)``
(torch's CPU sort, so tied scores come out in the order IRRA's evaluation puts them), then:

* CMC / Recall@K: the share of queries with a relevant image within the first K, in percent;
* AP of a query: the mean over its relevant images of the precision at the rank of each (so every
  relevant image counts, not only the first), mAP its mean, in percent;
* INP of a query: (number of relevant images) / (rank of the last relevant image), mINP its mean.

Two differences from IRRA, both where IRRA would crash: a gallery smaller than K repeats its last
CMC value up to K, and a query with no relevant image raises a ValueError naming it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MAX_RANK = 10
ROW_CHUNK = 1024


def argsort_descending(similarity: np.ndarray) -> np.ndarray:
    """Row-wise gallery order, best first, with IRRA's tie order (``torch.argsort(descending=True)``, CPU).

    Sorting is done in chunks of rows, which gives the same order as one call on the whole matrix.
    """
    import torch

    rows = np.ascontiguousarray(similarity)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    order = np.empty(rows.shape, np.int64)
    for first in range(0, rows.shape[0], ROW_CHUNK):
        chunk = torch.from_numpy(rows[first : first + ROW_CHUNK])
        order[first : first + ROW_CHUNK] = torch.argsort(chunk, dim=1, descending=True).numpy()
    return order


@dataclass(frozen=True)
class RankResult:
    """IRRA ``rank()`` output plus per-query detail.

    Attributes:
        cmc: (max_rank,) percent of queries with a hit within rank k+1.
        mAP: mean average precision, percent.
        mINP: mean inverse negative penalty, percent.
        indices: (Q, G) gallery order per query, best first.
        first_hit: (Q,) 1-based rank of the first relevant image.
        last_hit: (Q,) 1-based rank of the last relevant image.
        average_precision: (Q,) AP per query, in [0, 1].
    """

    cmc: np.ndarray
    mAP: float  # noqa: N815 - the field name of the metric, as IRRA spells it
    mINP: float  # noqa: N815
    indices: np.ndarray
    first_hit: np.ndarray
    last_hit: np.ndarray
    average_precision: np.ndarray


def rank(
    similarity: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, max_rank: int = MAX_RANK
) -> RankResult:
    """IRRA's ``rank(similarity, q_pids, g_pids, max_rank, get_mAP=True)`` on numpy arrays.

    Args:
        similarity: (Q, G) scores, higher is better.
        q_pids: (Q,) identity of each query; g_pids: (G,) identity of each gallery image. A gallery
            image is relevant to a query when the identities are equal.
        max_rank: length of the CMC curve.

    Raises:
        ValueError: on mismatched shapes, non-finite scores, or a query with no relevant image.
    """
    similarity = np.asarray(similarity)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if similarity.ndim != 2 or similarity.shape != (len(q_pids), len(g_pids)):
        raise ValueError(
            f"similarity has shape {similarity.shape}, expected ({len(q_pids)} queries, {len(g_pids)} images)"
        )
    if similarity.size == 0:
        raise ValueError("similarity is empty")
    if not np.isfinite(similarity).all():
        raise ValueError("similarity holds NaN or infinite values")
    indices = argsort_descending(similarity)
    matches = g_pids[indices] == q_pids[:, None]  # (Q, G) bool
    num_rel = matches.sum(axis=1)
    if (num_rel == 0).any():
        missing = np.flatnonzero(num_rel == 0)
        raise ValueError(f"{len(missing)} queries have no relevant gallery image (first: query {missing[0]})")
    hits_so_far = matches.cumsum(axis=1)
    cmc_rows = np.minimum(hits_so_far[:, :max_rank], 1)
    cmc = cmc_rows.astype(np.float64).mean(axis=0) * 100.0
    if len(cmc) < max_rank:
        cmc = np.concatenate([cmc, np.full(max_rank - len(cmc), cmc[-1])])
    ranks = np.arange(1, matches.shape[1] + 1, dtype=np.float64)
    precision_at_hits = (hits_so_far / ranks) * matches
    average_precision = precision_at_hits.sum(axis=1) / num_rel
    first_hit = matches.argmax(axis=1) + 1
    last_hit = matches.shape[1] - matches[:, ::-1].argmax(axis=1)
    inp = num_rel / last_hit
    return RankResult(
        cmc=cmc,
        mAP=float(average_precision.mean() * 100.0),
        mINP=float(inp.mean() * 100.0),
        indices=indices,
        first_hit=first_hit.astype(np.int64),
        last_hit=last_hit.astype(np.int64),
        average_precision=average_precision,
    )


@dataclass(frozen=True)
class RetrievalMetrics:
    """Recall@1/5/10, mAP and mINP in percent, over ``queries`` queries."""

    r1: float
    r5: float
    r10: float
    mAP: float  # noqa: N815
    mINP: float  # noqa: N815
    queries: int

    @classmethod
    def from_rank(cls, result: RankResult) -> RetrievalMetrics:
        return cls(
            r1=float(result.cmc[0]),
            r5=float(result.cmc[4]),
            r10=float(result.cmc[9]),
            mAP=result.mAP,
            mINP=result.mINP,
            queries=len(result.first_hit),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def retrieval_metrics(similarity: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> RetrievalMetrics:
    """R@1/5/10, mAP and mINP of a similarity matrix (see :func:`rank`)."""
    return RetrievalMetrics.from_rank(rank(similarity, q_pids, g_pids, MAX_RANK))
