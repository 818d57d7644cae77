"""Calibration, pooling and hysteresis on hand-made embeddings and score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from agent.matching.scoring import PoolingParams, TrackScores, calibrated_scores


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_calibration_is_softmax_against_normals() -> None:
    tracks = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])
    queries = np.stack([_unit(1, 0, 0)])
    bank = np.stack([_unit(0, 1, 0), _unit(0, 0, 1)])
    probability, cosine = calibrated_scores(tracks, queries, bank, np.array([[0, 1]]), logit_scale=10.0)
    np.testing.assert_allclose(cosine[:, 0], [1.0, 0.0], atol=1e-6)
    # track 0: logits (10, 0, 0) -> e^10 / (e^10 + 2); track 1: logits (0, 10, 0)
    np.testing.assert_allclose(probability[0, 0], np.exp(10) / (np.exp(10) + 2), rtol=1e-5)
    np.testing.assert_allclose(probability[1, 0], 1 / (np.exp(10) + 2), rtol=1e-4)


def test_calibration_padding_and_shared_normals() -> None:
    tracks = np.stack([_unit(1, 1, 0)])
    queries = np.stack([_unit(1, 0, 0), _unit(1, 0, 0)])
    bank = np.stack([_unit(0, 1, 0), _unit(0, 0, 1)])
    # query 0 has one normal (padding -1) of equal cosine -> 0.5; query 1 adds a worse one
    probability, _ = calibrated_scores(tracks, queries, bank, np.array([[0, -1], [0, 1]]), 5.0)
    assert probability[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert 1 / 3 < probability[0, 1] < 0.5


def test_calibration_is_stable_at_large_scales() -> None:
    tracks = np.stack([_unit(0, 1, 0)])
    probability, _ = calibrated_scores(tracks, np.stack([_unit(1, 0, 0)]), np.stack([_unit(0, 1, 0)]),
                                       np.array([[0]]), logit_scale=1000.0)  # fmt: skip
    assert probability[0, 0] == 0.0 and np.isfinite(probability).all()


def one(value: float) -> np.ndarray:
    return np.array([value], np.float32)


ALL = np.array([True])


def test_pooling_is_window_max_of_moving_average() -> None:
    scores = TrackScores(PoolingParams(ema_alpha=0.5, window_s=10.0), size=1)
    assert scores.add(0.0, one(0.2), one(0.1), ALL)[0] == pytest.approx(0.2)  # ema 0.2
    assert scores.add(1.0, one(0.8), one(0.3), ALL)[0] == pytest.approx(0.5)  # ema 0.5
    assert scores.add(2.0, one(0.2), one(0.1), ALL)[0] == pytest.approx(0.5)  # ema 0.35; window holds 0.5
    assert scores.ema[0] == pytest.approx(0.35)
    # 12 s later the 0.5 average has left the 10 s window: ema 0.275 alone remains
    assert scores.add(13.0, one(0.2), one(0.1), ALL)[0] == pytest.approx(0.275)
    assert [t for t, _ in scores.column_history(0)] == [0.0, 1.0, 2.0, 13.0]
    assert scores.cosine[0] == pytest.approx(0.1)


def test_single_spike_does_not_enter_but_sustained_score_does() -> None:
    params = PoolingParams(ema_alpha=0.3, window_s=4.0, exit_margin=0.1)
    spike = TrackScores(params, size=1)
    states = []
    for t, p in enumerate([0.1, 0.1, 0.95, 0.1, 0.1]):
        spike.add(float(t), one(p), one(0.0), ALL)
        states.append(bool(spike.update_state(one(0.6))[0]))
    assert not any(states), "one noisy frame must not open an alert"

    sustained = TrackScores(params, size=1)
    states = []
    for t, p in enumerate([0.1, 0.8, 0.8, 0.8, 0.8]):
        sustained.add(float(t), one(p), one(0.0), ALL)
        states.append(bool(sustained.update_state(one(0.6))[0]))
    assert states[:2] == [False, False] and states[-1] is True


def test_hysteresis_exit_below_margin_only() -> None:
    scores = TrackScores(PoolingParams(ema_alpha=1.0, window_s=0.5, exit_margin=0.1), size=1)
    sequence = [(0.65, True), (0.55, True), (0.52, True), (0.49, False), (0.55, False), (0.61, True)]
    for t, (probability, expected) in enumerate(sequence):
        scores.add(float(t), one(probability), one(0.0), ALL)
        assert bool(scores.update_state(one(0.6))[0]) is expected, (t, probability)


def test_columns_are_independent_masked_and_remapped() -> None:
    scores = TrackScores(PoolingParams(ema_alpha=0.5, window_s=10.0, exit_margin=0.1), size=3)
    mask = np.array([True, False, True])
    scores.add(0.0, np.array([0.2, 0.9, 0.8], np.float32), np.zeros(3, np.float32), mask)
    assert np.isnan(scores.pooled[1]) and scores.scored.tolist() == [True, False, True]
    active = scores.update_state(np.array([0.5, 0.1, 0.5], np.float32))
    assert active.tolist() == [False, False, True], "an unscored column is never active"
    # queries changed: old column 2 moves to 0, old column 0 is gone, and a new column appears
    scores.remap(np.array([2, -1], np.int64))
    assert scores.size == 2
    assert scores.pooled[0] == pytest.approx(0.8) and np.isnan(scores.pooled[1])
    assert scores.active.tolist() == [True, False]
    (only,) = scores.column_history(0)
    assert only[0] == 0.0 and only[1] == pytest.approx(0.8)
    assert scores.column_history(1) == []
