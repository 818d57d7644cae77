"""Box overlap costs and optimal assignment for the trackers (NumPy and ``lap``, no torch)."""

from __future__ import annotations

import lap
import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``boxes_a`` (N, 4) with every box in ``boxes_b`` (M, 4): (N, M)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-7)


def fuse_score(cost: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ByteTrack's score fusion: cost 1 - IoU becomes 1 - IoU x detection confidence (per column)."""
    if cost.size == 0:
        return cost
    return 1 - (1 - cost) * np.asarray(scores)[None, :]


def linear_assignment(
    cost: np.ndarray, threshold: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost one-to-one matching of rows to columns, pairs costing more than ``threshold`` excluded.

    Returns:
        Matched (row, column) pairs, unmatched rows and unmatched columns, each in increasing order.
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    _, row_to_col, col_to_row = lap.lapjv(cost, extend_cost=True, cost_limit=threshold)
    matches = [(r, int(c)) for r, c in enumerate(row_to_col) if c >= 0]
    return (
        matches,
        [int(r) for r in np.flatnonzero(row_to_col < 0)],
        [int(c) for c in np.flatnonzero(col_to_row < 0)],
    )
