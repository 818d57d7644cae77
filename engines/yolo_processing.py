"""YOLO pre- and post-processing in numpy: letterbox, decode, class filter, NMS, boxes back to frames.

One implementation, used by the ``yolo`` detector at run time and by ``watchword export yolo``'s
parity check, whatever engine runs the graph (ONNX Runtime, TensorRT, torch). It follows ultralytics'
``LetterBox`` (square, centred, grey 114 padding, ``INTER_LINEAR``), ``non_max_suppression`` (best
class per anchor, class-offset greedy NMS, ``max_det``) and ``scale_boxes``, so that on the same graph
and the same frames it returns the boxes ultralytics' predictor returns.

The graph's input is letterboxed RGB in [0, 1], (B, 3, S, S); its output ``(B, 4 + classes, anchors)``
holds boxes as centre x, centre y, width, height in input pixels, then one score per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114
MAX_WH = 7680.0  # pixels; class offset that keeps boxes of different classes apart in one NMS
MAX_NMS = 30000  # candidates kept (by score) before NMS
MAX_DET = 300  # detections kept per image after NMS


@dataclass(frozen=True)
class Letterbox:
    """Where a frame went in the square input: scale and padding, to map boxes back.

    Attributes:
        height, width: the frame's size in pixels.
        new_height, new_width: its size after resizing, in input pixels.
        top, left: padding before the resized frame, in input pixels.
    """

    height: int
    width: int
    new_height: int
    new_width: int
    top: int
    left: int


def letterbox_geometry(height: int, width: int, imgsz: int) -> Letterbox:
    """Scale a ``height`` x ``width`` frame to fit ``imgsz`` square (aspect kept) and centre it."""
    ratio = min(imgsz / height, imgsz / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    pad_w, pad_h = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    return Letterbox(height, width, new_h, new_w, round(pad_h - 0.1), round(pad_w - 0.1))


def letterbox(frame_bgr: np.ndarray, imgsz: int) -> tuple[np.ndarray, Letterbox]:
    """One BGR uint8 frame as (3, S, S) RGB float32 in [0, 1], and its geometry."""
    geometry = letterbox_geometry(frame_bgr.shape[0], frame_bgr.shape[1], imgsz)
    resized = frame_bgr
    if (geometry.new_width, geometry.new_height) != (frame_bgr.shape[1], frame_bgr.shape[0]):
        resized = cv2.resize(
            frame_bgr, (geometry.new_width, geometry.new_height), interpolation=cv2.INTER_LINEAR
        )
    canvas = np.full((imgsz, imgsz, 3), PAD_VALUE, dtype=np.uint8)
    top, left = geometry.top, geometry.left
    canvas[top : top + geometry.new_height, left : left + geometry.new_width] = resized
    chw = canvas[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(chw, dtype=np.float32) / np.float32(255.0), geometry


def letterbox_into(frame_bgr: np.ndarray, out: np.ndarray, canvas: np.ndarray) -> Letterbox:
    """:func:`letterbox` written into ``out`` (a (3, S, S) float32 view of a batch buffer) in place.

    ``canvas`` is an (S, S, 3) uint8 scratch array the caller keeps between frames; the values in
    ``out`` are bit for bit those of :func:`letterbox` (the same resize, then RGB / 255 in float32).
    """
    imgsz = out.shape[-1]
    geometry = letterbox_geometry(frame_bgr.shape[0], frame_bgr.shape[1], imgsz)
    resized = frame_bgr
    if (geometry.new_width, geometry.new_height) != (frame_bgr.shape[1], frame_bgr.shape[0]):
        resized = cv2.resize(
            frame_bgr, (geometry.new_width, geometry.new_height), interpolation=cv2.INTER_LINEAR
        )
    canvas.fill(PAD_VALUE)
    top, left = geometry.top, geometry.left
    canvas[top : top + geometry.new_height, left : left + geometry.new_width] = resized
    np.divide(canvas[:, :, ::-1].transpose(2, 0, 1), np.float32(255.0), out=out, dtype=np.float32)
    return geometry


def preprocess(frames_bgr: Sequence[np.ndarray], imgsz: int) -> tuple[np.ndarray, list[Letterbox]]:
    """A batch of frames (sizes may differ) as (B, 3, S, S) float32 and each frame's geometry."""
    pairs = [letterbox(frame, imgsz) for frame in frames_bgr]
    return np.stack([pixels for pixels, _ in pairs]), [geometry for _, geometry in pairs]


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first.

    A box is dropped when its IoU with a better kept box is above ``iou_threshold`` (as torchvision).
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes_xyxy[:, i].astype(np.float32) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, np.float32(1e-12))
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def class_wise_nms(
    boxes_xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """:func:`nms` within each class: boxes of different classes never suppress each other (each
    class is shifted :data:`MAX_WH` pixels apart). Indices of the kept boxes, best score first."""
    return nms(boxes_xyxy + class_id[:, None].astype(np.float32) * MAX_WH, scores, iou_threshold)


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections in its own pixels: (N, 4) xyxy float32, (N,) scores, (N,) class ids."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray


def decode(
    output: np.ndarray,
    geometries: Sequence[Letterbox],
    confidence: float,
    iou: float,
    classes: Sequence[int] | None = None,
    max_det: int = MAX_DET,
) -> list[ImageDetections]:
    """Turn a raw head output (B, 4 + classes, anchors) into per-frame detections.

    Args:
        output: the graph's output for the batch (float16 is upcast).
        geometries: each frame's letterbox, from :func:`preprocess`.
        confidence: the least class score kept (strictly above, as ultralytics).
        iou: NMS IoU threshold within a class.
        classes: class ids to keep; None or empty keeps every class.
        max_det: most detections per frame.
    """
    predictions = np.asarray(output, dtype=np.float32)
    if predictions.ndim != 3 or predictions.shape[1] < 5:
        raise ValueError(f"expected a (batch, 4 + classes, anchors) output, got shape {predictions.shape}")
    if len(geometries) != predictions.shape[0]:
        raise ValueError(f"{len(geometries)} frames for a batch of {predictions.shape[0]} outputs")
    wanted = np.asarray(list(classes or []), dtype=np.int64)
    results = []
    for prediction, geometry in zip(predictions, geometries, strict=True):
        # (4 + classes, anchors) as the graph lays it out: the best class score per anchor is a
        # reduction over contiguous rows, and only the anchors above the threshold (a few dozen of
        # 8,400) are transposed and searched for their class (a full argmax over the transposed
        # output cost 2 ms a frame, time taken from the engine's threads on a small CPU)
        best = prediction[4:].max(axis=0)
        above = np.flatnonzero(best > confidence)
        class_id = prediction[4:, above].argmax(axis=0)
        keep = np.isin(class_id, wanted) if wanted.size else np.ones(len(above), bool)
        above, class_id = above[keep], class_id[keep]
        boxes, scores = prediction[:4, above].T, best[above]
        if len(scores) > MAX_NMS:
            top = np.argsort(-scores, kind="stable")[:MAX_NMS]
            boxes, scores, class_id = boxes[top], scores[top], class_id[top]
        xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
        kept = class_wise_nms(xyxy, scores, class_id, iou)[:max_det]
        results.append(
            ImageDetections(
                xyxy=scale_boxes(xyxy[kept], geometry),
                confidence=scores[kept].astype(np.float32),
                class_id=class_id[kept].astype(np.int64),
            )
        )
    return results


def scale_boxes(xyxy: np.ndarray, geometry: Letterbox) -> np.ndarray:
    """Boxes from input pixels back to the frame's pixels, clipped to the frame."""
    gain_x = geometry.new_width / geometry.width
    gain_y = geometry.new_height / geometry.height
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - geometry.left) / gain_x, 0, geometry.width)
    boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - geometry.top) / gain_y, 0, geometry.height)
    return boxes
