"""Calibration, pooling and hysteresis on hand-made embeddings and score sequences."""

from __future__ import annotations

import numpy as np
import pytest

from agent.matching.scoring import PairScore, PoolingParams, calibrated_scores


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_calibration_is_softmax_against_normals() -> None:
    tracks = np.stack([_unit(1, 0, 0), _unit(0, 1, 0)])
    queries = np.stack([_unit(1, 0, 0)])
    normals = np.stack([[_unit(0, 1, 0), _unit(0, 0, 1)]])
    probability, cosine = calibrated_scores(tracks, queries, normals, logit_scale=10.0)
    np.testing.assert_allclose(cosine[:, 0], [1.0, 0.0], atol=1e-6)
    # track 0: logits (10, 0, 0) -> e^10 / (e^10 + 2); track 1: logits (0, 10, 0)
    np.testing.assert_allclose(probability[0, 0], np.exp(10) / (np.exp(10) + 2), rtol=1e-5)
    np.testing.assert_allclose(probability[1, 0], 1 / (np.exp(10) + 2), rtol=1e-4)


def test_calibration_mask_ignores_padding() -> None:
    tracks = np.stack([_unit(1, 1, 0)])
    queries = np.stack([_unit(1, 0, 0), _unit(1, 0, 0)])
    normals = np.stack([[_unit(0, 1, 0), _unit(0, 1, 0)], [_unit(0, 1, 0), _unit(0, 0, 1)]])
    mask = np.array([[True, False], [True, True]])
    probability, _ = calibrated_scores(tracks, queries, normals, 5.0, normal_mask=mask)
    # query 0 has one normal of equal cosine -> 0.5; query 1 adds a worse normal -> above 1/3, below 0.5
    assert probability[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert 1 / 3 < probability[0, 1] < 0.5


def test_pooling_is_window_max_of_moving_average() -> None:
    pair = PairScore(PoolingParams(ema_alpha=0.5, window_s=10.0))
    assert pair.add(0.0, 0.2, 0.1) == pytest.approx(0.2)  # ema 0.2
    assert pair.add(1.0, 0.8, 0.3) == pytest.approx(0.5)  # ema 0.5
    assert pair.add(2.0, 0.2, 0.1) == pytest.approx(0.5)  # ema 0.35; the window still holds 0.5
    assert pair.ema == pytest.approx(0.35)
    # 12 s later the 0.5 average has left the 10 s window: ema 0.275 alone remains
    assert pair.add(13.0, 0.2, 0.1) == pytest.approx(0.275)
    assert [t for t, _ in pair.history] == [0.0, 1.0, 2.0, 13.0]
    assert pair.last_cosine == pytest.approx(0.1)


def test_single_spike_does_not_enter_but_sustained_score_does() -> None:
    params = PoolingParams(ema_alpha=0.3, window_s=4.0, exit_margin=0.1)
    spike = PairScore(params)
    states = []
    for t, p in enumerate([0.1, 0.1, 0.95, 0.1, 0.1]):
        spike.add(float(t), p, 0.0)
        states.append(spike.update_state(0.6))
    assert not any(states), "one noisy frame must not open an alert"

    sustained = PairScore(params)
    states = []
    for t, p in enumerate([0.1, 0.8, 0.8, 0.8, 0.8]):
        sustained.add(float(t), p, 0.0)
        states.append(sustained.update_state(0.6))
    assert states[:2] == [False, False] and states[-1] is True


def test_hysteresis_exit_below_margin_only() -> None:
    pair = PairScore(PoolingParams(ema_alpha=1.0, window_s=0.5, exit_margin=0.1))
    sequence = [(0.65, True), (0.55, True), (0.52, True), (0.49, False), (0.55, False), (0.61, True)]
    for t, (probability, expected) in enumerate(sequence):
        pair.add(float(t), probability, 0.0)
        assert pair.update_state(0.6) is expected, (t, probability)
