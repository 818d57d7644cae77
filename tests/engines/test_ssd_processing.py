"""The SSD's numpy decoding keeps exactly what OpenCV 4's DetectionOutput kept, class by class.

The reference below is a plain transcription of the DetectionOutput rules (every class, top-k,
greedy suppression, then the best keep-top-k over all classes), written independently of
``engines.ssd_processing``; the fast path there (only the wanted classes, from the least wanted
score) must give the same detections on random inputs, including ones where the keep-top-k cut
over all classes bites.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.ssd_processing import SSDDecoding, decode_boxes, detect, ssd_priors

ANCHORS = [
    {"feature": [4, 4], "widths": [30.0, 60.0], "heights": [30.0, 40.0]},
    {"feature": [2, 2], "widths": [90.0, 120.0, 150.0], "heights": [90.0, 80.0, 200.0]},
]


def _rules(top_k: int = 10, keep_top_k: int = 12) -> SSDDecoding:
    return SSDDecoding(
        priors=ssd_priors(ANCHORS, 300),
        variance=(0.1, 0.1, 0.2, 0.2),
        confidence_threshold=0.01,
        nms_threshold=0.6,
        top_k=top_k,
        keep_top_k=keep_top_k,
        background=0,
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(encodings: np.ndarray, scores: np.ndarray, rules: SSDDecoding) -> list[tuple[int, int, float]]:
    """(class, anchor, score) of every detection DetectionOutput keeps, best first."""
    boxes = decode_boxes(encodings, rules.priors, rules.variance)
    kept: list[tuple[int, int, float]] = []
    for c in range(scores.shape[1]):
        if c == rules.background:
            continue
        order = sorted(
            (i for i in range(len(scores)) if scores[i, c] > rules.confidence_threshold),
            key=lambda i: -scores[i, c],
        )[: rules.top_k]
        survivors: list[int] = []
        for i in order:
            if all(_iou(boxes[i], boxes[j]) <= rules.nms_threshold for j in survivors):
                survivors.append(i)
        kept += [(c, i, float(scores[i, c])) for i in survivors]
    kept.sort(key=lambda row: -row[2])
    return kept[: rules.keep_top_k]


def test_priors_sit_at_cell_centres_in_the_predictors_order() -> None:
    priors = ssd_priors(ANCHORS, 300)
    assert priors.shape == (4 * 4 * 2 + 2 * 2 * 3, 4)
    # first cell of the first map: centre (37.5, 37.5) px, a 30x30 then a 60x40 anchor
    np.testing.assert_allclose(priors[0] * 300, [22.5, 22.5, 52.5, 52.5], atol=1e-4)
    np.testing.assert_allclose(priors[1] * 300, [7.5, 17.5, 67.5, 57.5], atol=1e-4)
    # second cell is one step to the right (x varies fastest)
    np.testing.assert_allclose(priors[2] * 300, [97.5, 22.5, 127.5, 52.5], atol=1e-4)


def test_decoding_reads_tensorflow_order_ty_tx_th_tw() -> None:
    prior = np.array([[0.4, 0.2, 0.6, 0.6]], np.float32)  # centre (0.5, 0.4), 0.2 wide, 0.4 high
    shifted = decode_boxes(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), prior, (0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(shifted, [[0.4, 0.24, 0.6, 0.64]], atol=1e-6)  # ty moves the centre down
    wider = decode_boxes(np.array([[0.0, 0.0, 0.0, 5.0]], np.float32), prior, (0.1, 0.1, 0.2, 0.2))
    width = float(wider[0, 2] - wider[0, 0])
    assert width == pytest.approx(0.2 * np.e, rel=1e-5)  # tw scales the width


@pytest.mark.parametrize("seed", range(12))
def test_wanted_classes_match_the_full_detection_output(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # odd seeds: top-k and the cut over all classes bite; even seeds: they never do, the floor decides
    if seed % 2:
        rules = _rules(top_k=int(rng.integers(3, 12)), keep_top_k=int(rng.integers(4, 20)))
    else:
        rules = _rules(top_k=100, keep_top_k=500)
    anchors = rules.priors.shape[0]
    encodings = rng.normal(0, 1, (anchors, 4)).astype(np.float32)
    scores = rng.uniform(0, 1, (anchors, 6)).astype(np.float32) ** 3  # many low, some high
    expected = _reference(encodings, scores, rules)
    for wanted, floor in (([1], 0.0), ([1], 0.3), ([2, 4], 0.2), ([1, 2, 3, 4, 5], 0.0)):
        boxes, got_scores, got_classes = detect(encodings, scores, rules, wanted, floor)
        want = [row for row in expected if row[0] in wanted and row[2] >= floor]
        assert [int(c) for c in got_classes] == [row[0] for row in want]
        np.testing.assert_allclose(got_scores, [row[2] for row in want], rtol=0, atol=0)
        all_boxes = decode_boxes(encodings, rules.priors, rules.variance)
        np.testing.assert_array_equal(boxes, all_boxes[[row[1] for row in want]].reshape(-1, 4))


def test_the_cut_over_all_classes_drops_a_wanted_detection_when_it_must() -> None:
    rules = _rules(top_k=10, keep_top_k=3)
    anchors = rules.priors.shape[0]
    encodings = np.zeros((anchors, 4), np.float32)
    scores = np.zeros((anchors, 3), np.float32)
    # three well-separated boxes of class 2 at 0.9, one person at 0.5 far from them
    for anchor in (0, 6, 30):
        scores[anchor, 2] = 0.9
    scores[12, 1] = 0.5
    _boxes, kept, classes = detect(encodings, scores, rules, [1], 0.4)
    assert len(kept) == 0, "three better detections of another class fill keep_top_k"
    _boxes, kept, classes = detect(encodings, scores, _rules(top_k=10, keep_top_k=4), [1], 0.4)
    assert list(classes) == [1] and kept[0] == pytest.approx(0.5)


def test_mismatched_outputs_are_refused() -> None:
    rules = _rules()
    with pytest.raises(ValueError, match="anchors"):
        detect(np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32), rules, [1], 0.1)
