"""YOLO letterbox and decode in numpy, against ultralytics' own LetterBox, NMS and scale_boxes."""

from __future__ import annotations

import numpy as np
import pytest

from engines.yolo_processing import decode, letterbox, letterbox_geometry, nms, preprocess


@pytest.mark.parametrize("shape", [(576, 768), (240, 320), (400, 200), (33, 1000), (160, 160)])
def test_letterbox_matches_ultralytics(shape: tuple[int, int]) -> None:
    from engines.ultralytics_import import import_ultralytics

    import_ultralytics()
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    pixels, geometry = letterbox(frame, 160)
    theirs = np.asarray(LetterBox(160, auto=False, stride=32)(image=frame))
    expected = np.ascontiguousarray(theirs[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
    assert pixels.shape == (3, 160, 160) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, expected)
    assert geometry == letterbox_geometry(*shape, 160)


def test_decode_filters_suppresses_and_maps_boxes_back() -> None:
    """Two overlapping people, one far box of class 1, one low score: NMS keeps the better person."""
    anchors = np.zeros((1, 4 + 2, 4), dtype=np.float32)
    # centre x, centre y, width, height in input pixels (a 160 px input of a 320x160 frame: scale 0.5).
    anchors[0, :4, 0] = [50, 80, 20, 40]
    anchors[0, :4, 1] = [51, 80, 20, 40]  # IoU ~0.9 with anchor 0
    anchors[0, :4, 2] = [120, 80, 20, 20]
    anchors[0, :4, 3] = [20, 80, 10, 10]
    anchors[0, 4, :] = [0.9, 0.8, 0.1, 0.2]  # person scores
    anchors[0, 5, :] = [0.0, 0.0, 0.7, 0.0]  # class 1 scores
    _, (geometry,) = preprocess([np.zeros((160, 320, 3), np.uint8)], 160)
    (found,) = decode(anchors, [geometry], confidence=0.25, iou=0.7)
    assert found.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(found.confidence, [0.9, 0.7])
    # x 40..60 at half scale -> 80..120; y 60..100 less 40 px of padding, at half scale -> 40..120.
    np.testing.assert_allclose(found.xyxy[0], [80, 40, 120, 120], atol=1e-4)
    (people,) = decode(anchors, [geometry], confidence=0.25, iou=0.7, classes=[0])
    assert people.class_id.tolist() == [0]
    (loose,) = decode(anchors, [geometry], confidence=0.25, iou=0.95)
    assert len(loose.confidence) == 3


def test_nms_matches_torchvision() -> None:
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2)).astype(np.float32)], axis=1)
    scores = rng.random(300).astype(np.float32)
    for threshold in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, threshold), expected)


def test_letterbox_into_a_batch_buffer_matches_letterbox_bit_for_bit() -> None:
    """The pipeline letterboxes frames straight into a preallocated batch buffer; the pixels the
    graph sees are exactly those of :func:`letterbox` (frames of several sizes, one reused canvas)."""
    from engines.yolo_processing import letterbox, letterbox_into

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((576, 768), (240, 320), (64, 64))]
    buffer = np.full((4, 3, 160, 160), -1.0, np.float32)
    canvas = np.empty((160, 160, 3), np.uint8)
    for row, frame in enumerate(frames):
        geometry = letterbox_into(frame, buffer[row], canvas)
        expected, expected_geometry = letterbox(frame, 160)
        assert geometry == expected_geometry
        assert np.array_equal(buffer[row], expected)
    assert (buffer[3] == -1.0).all()  # rows past the batch are left alone
