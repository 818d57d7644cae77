"""Keypoints and limbs drawn on an evidence frame."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from agent.pose.estimator import SKELETON

LIMB_COLOR_BGR = (0, 255, 255)
JOINT_COLOR_BGR = (0, 200, 0)


def draw_skeleton(
    image: np.ndarray, keypoints: Sequence[Sequence[float]], min_score: float = 0.25
) -> np.ndarray:
    """``image`` (drawn on in place and returned) with the keypoints (x, y pixels, score) that reach
    ``min_score`` as dots and the limbs between two such keypoints as lines."""
    points = np.asarray(keypoints, np.float32).reshape(-1, 3)
    height, width = image.shape[:2]
    thickness = max(1, round(min(height, width) / 400))
    seen = points[:, 2] >= min_score
    for a, b in SKELETON:
        if seen[a] and seen[b]:
            start = (round(float(points[a, 0])), round(float(points[a, 1])))
            end = (round(float(points[b, 0])), round(float(points[b, 1])))
            cv2.line(image, start, end, LIMB_COLOR_BGR, thickness, cv2.LINE_AA)
    for x, y, _ in points[seen]:
        cv2.circle(image, (round(float(x)), round(float(y))), thickness + 2, JOINT_COLOR_BGR, -1, cv2.LINE_AA)
    return image
