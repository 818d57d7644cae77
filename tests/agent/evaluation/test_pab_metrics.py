"""IRRA's retrieval metrics on hand-computed cases, ties in torch's argsort order, and a loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.evaluation.metrics import argsort_descending, rank, retrieval_metrics


def test_perfect_ranking() -> None:
    metrics = retrieval_metrics(np.eye(3), np.array([0, 1, 2]), np.array([0, 1, 2]))
    assert (metrics.r1, metrics.r5, metrics.r10, metrics.mAP, metrics.mINP) == (100, 100, 100, 100, 100)
    assert metrics.queries == 3


def test_reversed_ranking() -> None:
    # one query, its image scored lowest of four: first (and last) hit at rank 4
    result = rank(np.array([[0.1, 0.4, 0.3, 0.2]]), np.array([7]), np.array([7, 1, 2, 3]))
    assert result.cmc.tolist() == [0, 0, 0, 100, 100, 100, 100, 100, 100, 100]  # gallery < 10: padded
    assert result.mAP == pytest.approx(25.0)
    assert result.mINP == pytest.approx(25.0)
    assert result.first_hit.tolist() == [4] and result.last_hit.tolist() == [4]


def test_reversed_ranking_of_every_query() -> None:
    similarity = -np.eye(4)  # each query's own image is its worst
    metrics = retrieval_metrics(similarity, np.arange(4), np.arange(4))
    assert (metrics.r1, metrics.r5) == (0.0, 100.0)
    assert metrics.mAP == pytest.approx(25.0) and metrics.mINP == pytest.approx(25.0)


def test_several_relevant_images() -> None:
    # relevant: g0 and g2; order g1, g0, g3, g2 -> hits at ranks 2 and 4
    result = rank(np.array([[0.8, 0.9, 0.6, 0.7]]), np.array([5]), np.array([5, 1, 5, 2]))
    assert result.cmc[:5].tolist() == [0, 100, 100, 100, 100]
    assert result.average_precision[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.mAP == pytest.approx(50.0)
    assert result.mINP == pytest.approx(100 * 2 / 4)  # two relevant, the last at rank 4
    assert (result.first_hit[0], result.last_hit[0]) == (2, 4)


def test_two_queries_averaged() -> None:
    similarity = np.array([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]])
    # q0 -> g0 (rank 1); q1 -> g1 (rank 3)
    metrics = retrieval_metrics(similarity, np.array([0, 1]), np.array([0, 1, 2]))
    assert metrics.r1 == 50.0 and metrics.r5 == 100.0
    assert metrics.mAP == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert metrics.mINP == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_small_ties() -> None:
    # three equal scores: torch puts them in index order here, so the relevant g2 is third
    result = rank(np.array([[0.5, 0.5, 0.5]]), np.array([1]), np.array([0, 0, 1]))
    assert result.first_hit.tolist() == [3]
    assert result.mAP == pytest.approx(100 / 3) and result.cmc[0] == 0.0


def test_ties_follow_torch_argsort_not_a_stable_sort() -> None:
    similarity = np.ones((1, 20), np.float32)
    torch_order = torch.argsort(torch.from_numpy(similarity), dim=1, descending=True)[0].tolist()
    np.testing.assert_array_equal(argsort_descending(similarity)[0], torch_order)
    for relevant in (0, 10, 19):
        g_pids = np.zeros(20, np.int64)
        g_pids[relevant] = 1
        result = rank(similarity, np.array([1]), g_pids)
        assert result.first_hit[0] == torch_order.index(relevant) + 1


def _reference(
    similarity: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray
) -> tuple[list[float], float, float]:
    """The metric definitions written out query by query, on torch's argsort order."""
    order = torch.argsort(torch.from_numpy(similarity), dim=1, descending=True).numpy()
    cmc = [0.0] * 10
    aps, inps = [], []
    for q in range(len(q_pids)):
        relevant = [g_pids[g] == q_pids[q] for g in order[q]]
        hit_ranks = [i + 1 for i, r in enumerate(relevant) if r]
        for k in range(10):
            cmc[k] += 100.0 * (hit_ranks[0] <= k + 1) / len(q_pids)
        aps.append(sum((n + 1) / at for n, at in enumerate(hit_ranks)) / len(hit_ranks))
        inps.append(len(hit_ranks) / hit_ranks[-1])
    return cmc, 100 * float(np.mean(aps)), 100 * float(np.mean(inps))


@pytest.mark.parametrize("shape", [(40, 30), (25, 120), (3, 2000)])
def test_matches_the_reference_on_tie_heavy_random_data(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[1])
    queries, gallery = shape
    similarity = rng.integers(0, 4, shape).astype(np.float32)  # many ties
    g_pids = rng.integers(0, 6, gallery)
    q_pids = g_pids[rng.integers(0, gallery, queries)]
    result = rank(similarity, q_pids, g_pids)
    cmc, mean_ap, mean_inp = _reference(similarity, q_pids, g_pids)
    np.testing.assert_allclose(result.cmc, cmc[: len(result.cmc)], atol=1e-9)
    assert result.mAP == pytest.approx(mean_ap) and result.mINP == pytest.approx(mean_inp)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        rank(np.zeros((2, 3)), np.array([0]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no relevant"):
        rank(np.zeros((1, 2)), np.array([9]), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        rank(np.array([[np.nan, 1.0]]), np.array([0]), np.array([0, 1]))
