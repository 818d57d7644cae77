"""Constant-velocity Kalman filters over a box, in NumPy, as in SORT, ByteTrack and BoT-SORT.

The state is 8-dimensional: four box numbers and their velocities (per frame). Process and
measurement noise scale with the box size, so a tall person near the camera may move more pixels
per frame than a small one far away. :class:`KalmanXYAH` (ByteTrack) measures centre x, centre y,
aspect ratio w/h and height; :class:`KalmanXYWH` (BoT-SORT) measures centre x, centre y, width and
height, which follows boxes whose aspect ratio changes (a person turning, sitting down) better.
"""

from __future__ import annotations

import numpy as np

_POSITION_WEIGHT = 1.0 / 20  # position noise, as a fraction of the box size
_VELOCITY_WEIGHT = 1.0 / 160  # velocity noise, as a fraction of the box size per frame


class _ConstantVelocityKalman:
    """Shared predict/project/update of the two filters; subclasses give the noise per box."""

    def __init__(self) -> None:
        self._motion = np.eye(8)
        self._motion[:4, 4:] = np.eye(4)  # position += velocity (one frame)
        self._observation = np.eye(4, 8)

    def _position_std(self, measurement: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _velocity_std(self, measurement: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _measurement_std(self, measurement: np.ndarray) -> np.ndarray:
        return self._position_std(measurement)

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (8,) and covariance (8, 8) of a new track from its first measurement, velocity zero."""
        mean = np.concatenate([measurement, np.zeros(4)])
        std = np.concatenate([2 * self._position_std(measurement), 10 * self._velocity_std(measurement)])
        return mean, np.diag(np.square(std))

    def multi_predict(self, means: np.ndarray, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead for N tracks at once: means (N, 8), covariances (N, 8, 8)."""
        if len(means) == 0:
            return means, covariances
        boxes = means[:, :4]
        std = np.concatenate(
            [
                np.stack([self._position_std(box) for box in boxes]),
                np.stack([self._velocity_std(box) for box in boxes]),
            ],
            axis=1,
        )
        noise = np.stack([np.diag(row) for row in np.square(std)])
        means = means @ self._motion.T
        covariances = self._motion @ covariances @ self._motion.T + noise
        return means, covariances

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct one track's state with a measured box (4,)."""
        projected_mean = self._observation @ mean
        projected_cov = self._observation @ covariance @ self._observation.T + np.diag(
            np.square(self._measurement_std(mean[:4]))
        )
        cross = covariance @ self._observation.T  # (8, 4)
        gain = np.linalg.solve(
            projected_cov, cross.T
        ).T  # cross @ inv(projected_cov); projected_cov is symmetric
        innovation = measurement - projected_mean
        new_mean = mean + gain @ innovation
        new_covariance = covariance - gain @ projected_cov @ gain.T
        return new_mean, new_covariance


class KalmanXYAH(_ConstantVelocityKalman):
    """Box as centre x, centre y, aspect ratio (w/h), height; ByteTrack's filter."""

    def _position_std(self, measurement: np.ndarray) -> np.ndarray:
        h = measurement[3]
        return np.array([_POSITION_WEIGHT * h, _POSITION_WEIGHT * h, 1e-2, _POSITION_WEIGHT * h])

    def _velocity_std(self, measurement: np.ndarray) -> np.ndarray:
        h = measurement[3]
        return np.array([_VELOCITY_WEIGHT * h, _VELOCITY_WEIGHT * h, 1e-5, _VELOCITY_WEIGHT * h])

    def _measurement_std(self, measurement: np.ndarray) -> np.ndarray:
        h = measurement[3]
        return np.array([_POSITION_WEIGHT * h, _POSITION_WEIGHT * h, 1e-1, _POSITION_WEIGHT * h])

    @staticmethod
    def from_xyxy(box: np.ndarray) -> np.ndarray:
        w, h = box[2] - box[0], box[3] - box[1]
        return np.array([box[0] + w / 2, box[1] + h / 2, w / h, h], dtype=np.float64)

    @staticmethod
    def to_xyxy(state: np.ndarray) -> np.ndarray:
        cx, cy, a, h = state[:4]
        w = a * h
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class KalmanXYWH(_ConstantVelocityKalman):
    """Box as centre x, centre y, width, height; BoT-SORT's filter."""

    def _position_std(self, measurement: np.ndarray) -> np.ndarray:
        w, h = measurement[2], measurement[3]
        return _POSITION_WEIGHT * np.array([w, h, w, h])

    def _velocity_std(self, measurement: np.ndarray) -> np.ndarray:
        w, h = measurement[2], measurement[3]
        return _VELOCITY_WEIGHT * np.array([w, h, w, h])

    @staticmethod
    def from_xyxy(box: np.ndarray) -> np.ndarray:
        w, h = box[2] - box[0], box[3] - box[1]
        return np.array([box[0] + w / 2, box[1] + h / 2, w, h], dtype=np.float64)

    @staticmethod
    def to_xyxy(state: np.ndarray) -> np.ndarray:
        cx, cy, w, h = state[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
