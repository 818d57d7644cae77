"""Pre- and post-processing of an SSD (TensorFlow Object Detection API) graph, in numpy.

The converted ssd_mobilenet_v2_coco graph (``export/ssd_onnx.py``) ends at its box predictors:
per anchor, four box encodings (TensorFlow's ``ty, tx, th, tw``) and a sigmoid score per class. What
OpenCV 4 did after them with its ``PriorBox`` and ``DetectionOutput`` layers is done here, to the
same rules, so the detections match OpenCV 4's (tests/agent/detection/test_ssd_parity.py):

- anchors at every cell centre of each feature map, the text graph's widths and heights in input
  pixels, normalised to the input;
- centre-size decoding with the variances (0.1, 0.1, 0.2, 0.2);
- per class, candidates above ``confidence_threshold``, the best ``top_k``, greedy non-maximum
  suppression at ``nms_threshold`` (a box is dropped when its IoU with a better kept one is above
  it); then the best ``keep_top_k`` over all classes.

Only the classes a detector keeps are decoded and suppressed, and only from the least score it
keeps; the cut to ``keep_top_k`` over all classes is applied exactly whenever it could matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from engines.yolo_processing import nms


@dataclass(frozen=True)
class SSDDecoding:
    """The ``DetectionOutput`` rules (see the module docstring) and the anchors they decode against.

    Attributes:
        priors: ``(anchors, 4)`` float32 anchor boxes ``x1, y1, x2, y2`` in [0, 1] of the input.
        variance: the centre-size variances (x, y, width, height).
        confidence_threshold: candidates must score strictly above it.
        nms_threshold: IoU above which a lower-scored box of the same class is dropped.
        top_k: candidates per class before suppression.
        keep_top_k: detections per image over all classes after suppression.
        background: the class id that is never a detection.
    """

    priors: np.ndarray
    variance: tuple[float, float, float, float]
    confidence_threshold: float
    nms_threshold: float
    top_k: int
    keep_top_k: int
    background: int

    @classmethod
    def from_manifest(
        cls, anchors: Sequence[Mapping[str, Any]], detection: Mapping[str, Any], input_size: int
    ) -> SSDDecoding:
        """Build from what the SSD export records (``extra.anchors``, ``extra.detection``)."""
        variance = tuple(float(v) for v in detection["variance"])
        if len(variance) != 4:
            raise ValueError(f"expected 4 variances, got {variance}")
        return cls(
            priors=ssd_priors(anchors, input_size),
            variance=(variance[0], variance[1], variance[2], variance[3]),
            confidence_threshold=float(detection["confidence_threshold"]),
            nms_threshold=float(detection["nms_threshold"]),
            top_k=int(detection["top_k"]),
            keep_top_k=int(detection["keep_top_k"]),
            background=int(detection["background_label_id"]),
        )


def ssd_priors(anchors: Sequence[Mapping[str, Any]], input_size: int) -> np.ndarray:
    """The anchor boxes of all feature maps in the predictors' (map, y, x, anchor) order.

    Args:
        anchors: per feature map, ``feature`` (height, width in cells) and the anchors' ``widths``
            and ``heights`` in input pixels.
        input_size: the square input's side in pixels.

    Returns:
        ``(anchors, 4)`` float32 ``x1, y1, x2, y2`` normalised to the input (not clipped).
    """
    boxes = []
    for layer in anchors:
        rows, cols = (int(v) for v in layer["feature"])
        widths = np.asarray(layer["widths"], dtype=np.float32)
        heights = np.asarray(layer["heights"], dtype=np.float32)
        step_y, step_x = np.float32(input_size / rows), np.float32(input_size / cols)
        cy = (np.arange(rows, dtype=np.float32) + np.float32(0.5)) * step_y
        cx = (np.arange(cols, dtype=np.float32) + np.float32(0.5)) * step_x
        cy, cx = (a[..., None] for a in np.meshgrid(cy, cx, indexing="ij"))  # (rows, cols, 1)
        size = np.float32(input_size)
        layer_boxes = np.stack(
            [
                (cx - widths / 2) / size,
                (cy - heights / 2) / size,
                (cx + widths / 2) / size,
                (cy + heights / 2) / size,
            ],
            axis=-1,
        )
        boxes.append(layer_boxes.reshape(-1, 4))
    return np.ascontiguousarray(np.concatenate(boxes), dtype=np.float32)


def preprocess(frames_bgr: Sequence[np.ndarray], input_size: int) -> np.ndarray:
    """Frames as a new ``(batch, size, size, 3)`` uint8 RGB array (see :func:`resize_into`)."""
    batch = np.empty((len(frames_bgr), input_size, input_size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames_bgr):
        resize_into(frame, batch[i])
    return batch


def resize_into(frame_bgr: np.ndarray, out: np.ndarray) -> None:
    """Write one BGR frame into ``out``, a C-contiguous ``(size, size, 3)`` uint8 slot of an input
    batch, as RGB stretched to the square input (no letterbox), with no intermediate image.

    The resize is OpenCV's bilinear one, as ``cv2.dnn.blobFromImages`` did for OpenCV's DNN module;
    the channel swap then runs in place (a per-pixel permutation, so the bytes are those of swapping
    first and resizing after).
    """
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3 or not out.flags.c_contiguous:
        # OpenCV would write into a new array of its own and leave ``out`` as it was
        raise ValueError(f"out must be a C-contiguous HxWx3 uint8 array, got {out.dtype} {out.shape}")
    size = out.shape[1], out.shape[0]
    cv2.resize(frame_bgr, size, dst=out, interpolation=cv2.INTER_LINEAR)
    cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out)


def decode_boxes(encodings: np.ndarray, priors: np.ndarray, variance: Sequence[float]) -> np.ndarray:
    """Centre-size decoding of ``(N, 4)`` TensorFlow encodings ``ty, tx, th, tw`` against ``priors``.

    Returns ``(N, 4)`` float32 ``x1, y1, x2, y2`` normalised to the input.
    """
    enc = np.asarray(encodings, dtype=np.float32)
    prior_w = priors[:, 2] - priors[:, 0]
    prior_h = priors[:, 3] - priors[:, 1]
    prior_cx = (priors[:, 0] + priors[:, 2]) / 2
    prior_cy = (priors[:, 1] + priors[:, 3]) / 2
    vx, vy, vw, vh = (np.float32(v) for v in variance)
    cx = vx * enc[:, 1] * prior_w + prior_cx
    cy = vy * enc[:, 0] * prior_h + prior_cy
    width = np.exp(vw * enc[:, 3]) * prior_w
    height = np.exp(vh * enc[:, 2]) * prior_h
    return np.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], axis=1).astype(
        np.float32
    )


def _class_survivors(
    boxes: np.ndarray, scores: np.ndarray, floor: float, rules: SSDDecoding
) -> tuple[np.ndarray, np.ndarray]:
    """One class: (anchor indices, scores) kept by top-k and suppression, best first, scores >= floor.

    A box's fate in greedy suppression depends only on the boxes scored above it, so starting from
    ``floor`` instead of the confidence threshold keeps exactly the survivors at or above ``floor``.
    """
    candidates = np.flatnonzero(scores > rules.confidence_threshold)
    if candidates.size > rules.top_k:
        best = np.argsort(-scores[candidates], kind="stable")[: rules.top_k]
        candidates = candidates[best]
    candidates = candidates[scores[candidates] >= floor]
    if not candidates.size:
        return candidates, scores[candidates]
    kept = candidates[nms(boxes[candidates], scores[candidates], rules.nms_threshold)]
    return kept, scores[kept]


def detect(
    encodings: np.ndarray,
    class_scores: np.ndarray,
    rules: SSDDecoding,
    classes: Sequence[int],
    min_score: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections of ``classes`` scoring at least ``min_score``, as OpenCV 4 gave them.

    Args:
        encodings: ``(anchors, 4)`` box encodings from the graph.
        class_scores: ``(anchors, classes)`` sigmoid scores from the graph (column 0 the background).
        rules: the decoding rules and anchors.
        classes: the graph's class ids to return (TensorFlow's 91-id scheme for the COCO SSD).
        min_score: the least score returned.

    Returns:
        (``(N, 4)`` float32 boxes ``x1, y1, x2, y2`` normalised to the input, ``(N,)`` float32
        scores, ``(N,)`` int64 class ids), best score first.
    """
    if encodings.shape[0] != rules.priors.shape[0] or class_scores.shape[0] != rules.priors.shape[0]:
        raise ValueError(
            f"{encodings.shape[0]} encodings and {class_scores.shape[0]} scores for "
            f"{rules.priors.shape[0]} anchors"
        )
    floor = max(float(min_score), 0.0)
    wanted = [c for c in dict.fromkeys(int(c) for c in classes) if c != rules.background]
    wanted = [c for c in wanted if 0 <= c < class_scores.shape[1]]
    picked: list[tuple[np.ndarray, np.ndarray, int]] = []
    boxes: np.ndarray | None = None  # decoded on the first class that has a score above the floor
    for class_id in wanted:
        scores = class_scores[:, class_id]
        if not (scores >= floor).any():
            continue
        if boxes is None:
            boxes = decode_boxes(encodings, rules.priors, rules.variance)
        indices, kept_scores = _class_survivors(boxes, scores, floor, rules)
        if indices.size:
            picked.append((indices, kept_scores, class_id))
    if not picked:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    indices = np.concatenate([p[0] for p in picked])
    scores_out = np.concatenate([p[1] for p in picked]).astype(np.float32)
    class_out = np.concatenate([np.full(p[0].size, p[2], np.int64) for p in picked])
    lowest = float(scores_out.min())
    if _keep_top_k_may_cut(class_scores, rules, lowest, wanted, int(indices.size)):
        assert boxes is not None
        cutoff = _keep_top_k_cutoff(boxes, class_scores, rules, lowest)
        keep = scores_out >= cutoff
        indices, scores_out, class_out = indices[keep], scores_out[keep], class_out[keep]
    order = np.argsort(-scores_out, kind="stable")
    assert boxes is not None
    return boxes[indices[order]], scores_out[order], class_out[order]


def _keep_top_k_may_cut(
    class_scores: np.ndarray, rules: SSDDecoding, lowest: float, wanted: Sequence[int], picked: int
) -> bool:
    """Whether the best ``keep_top_k`` over all classes could drop one of the picked detections: only
    when the picked ones plus every other class's candidates above the lowest picked score (at most
    ``top_k`` each, an upper bound of their survivors) exceed ``keep_top_k``."""
    others = [c for c in range(class_scores.shape[1]) if c != rules.background and c not in wanted]
    above = np.count_nonzero(class_scores[:, others] >= lowest, axis=0)
    return picked + int(np.minimum(above, rules.top_k).sum()) > rules.keep_top_k


def _keep_top_k_cutoff(
    boxes: np.ndarray, class_scores: np.ndarray, rules: SSDDecoding, floor: float
) -> float:
    """The least score that survives the cut to ``keep_top_k`` detections over all classes."""
    survivors = [
        _class_survivors(boxes, class_scores[:, c], floor, rules)[1]
        for c in range(class_scores.shape[1])
        if c != rules.background
    ]
    scores = np.sort(np.concatenate(survivors))[::-1]
    if scores.size <= rules.keep_top_k:
        return -np.inf
    return float(scores[rules.keep_top_k - 1])
