"""Scoring queries with very different numbers of normal prompts: same numbers, no padded tensor."""

from __future__ import annotations

import tracemalloc

import numpy as np

from agent.matching.scoring import calibrated_scores


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _reference(
    tracks: np.ndarray, queries: np.ndarray, bank: np.ndarray, lists: list[list[int]], scale: float
) -> np.ndarray:
    """The formula, one (track, query) pair at a time."""
    out = np.zeros((len(tracks), len(queries)))
    for t, track in enumerate(tracks):
        for q, query in enumerate(queries):
            query_cos = float(track @ query)
            total = sum(np.exp(scale * (float(track @ bank[k]) - query_cos)) for k in lists[q])
            out[t, q] = 1.0 / (1.0 + total)
    return out


def test_queries_with_different_prompt_counts_score_as_the_formula_says() -> None:
    rng = np.random.default_rng(3)
    tracks, queries, bank = _unit_rows(rng, 5, 16), _unit_rows(rng, 4, 16), _unit_rows(rng, 12, 16)
    lists = [[0, 1, 2], [3], list(range(12)), [4, 5, 6]]
    index = np.full((4, 12), -1, np.int64)
    for q, prompts in enumerate(lists):
        index[q, : len(prompts)] = prompts
    probability, cosine = calibrated_scores(tracks, queries, bank, index, logit_scale=20.0)
    np.testing.assert_allclose(probability, _reference(tracks, queries, bank, lists, 20.0), rtol=1e-5)
    np.testing.assert_allclose(cosine, tracks @ queries.T, rtol=1e-6)


def test_one_wide_query_does_not_widen_every_query() -> None:
    rng = np.random.default_rng(4)
    tracks, dim, narrow_queries, wide = 64, 32, 200, 2000
    queries = _unit_rows(rng, narrow_queries + 1, dim)
    bank = _unit_rows(rng, wide, dim)
    index = np.full((narrow_queries + 1, wide), -1, np.int64)
    index[:narrow_queries, :3] = [0, 1, 2]
    index[narrow_queries] = np.arange(wide)
    embeddings = _unit_rows(rng, tracks, dim)
    tracemalloc.start()
    calibrated_scores(embeddings, queries, bank, index, logit_scale=50.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    padded = tracks * (narrow_queries + 1) * wide * 8  # the (T, Q, M) float64 tensor padded to M
    assert peak < padded / 20, f"peak {peak / 2**20:.1f} MiB vs padded {padded / 2**20:.1f} MiB"
