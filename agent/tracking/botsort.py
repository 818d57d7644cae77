"""BoT-SORT (Aharon et al., 2022) without a ReID model, in NumPy and OpenCV: no torch, no ultralytics.

ByteTrack's association (:mod:`agent.tracking.bytetrack`) with BoT-SORT's two changes: a Kalman
state of centre, width and height, and global motion compensation (GMC), which warps every track's
prediction by the camera's motion between consecutive frames, estimated from the background
(sparse optical flow by default; ORB or SIFT features, or ECC). Ported from the reference
implementation (github.com/NirAharon/BoT-SORT, MIT). Appearance is handled after tracking, by the
re-association in :mod:`agent.tracking.reassociation`, not by a ReID network.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from agent.tracking.bytetrack import BotSortKalmanMixin, ByteTracker, Track

logger = logging.getLogger(__name__)
_cv2: Any = cv2  # OpenCV's type stubs lack the feature factories and take no None for optional outputs

GMC_METHODS = ("sparseOptFlow", "orb", "sift", "ecc", "none")


class CameraMotion:
    """Estimates the camera's motion between consecutive frames as a 2x3 affine warp (pixels).

    Args:
        method: ``sparseOptFlow``, ``orb``, ``sift``, ``ecc`` or ``none`` (always the identity).
        downscale: the frame is shrunk by this factor before estimation (speed).
    """

    def __init__(self, method: str = "sparseOptFlow", downscale: int = 2) -> None:
        if method not in GMC_METHODS:
            raise ValueError(f"unknown camera-motion method {method!r}; expected one of {GMC_METHODS}")
        self.method = method
        self.downscale = max(1, downscale)
        self.failures = 0  # frames on which the estimate failed and the identity was used
        self._detector: Any = None
        self._extractor: Any = None
        self._matcher: Any = None
        if method == "orb":
            self._detector = _cv2.FastFeatureDetector_create(20)
            self._extractor = _cv2.ORB_create()
            self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        elif method == "sift":
            self._detector = self._extractor = _cv2.SIFT_create(
                nOctaveLayers=3, contrastThreshold=0.02, edgeThreshold=20
            )
            self._matcher = cv2.BFMatcher(cv2.NORM_L2)
        self.reset()

    def reset(self) -> None:
        self._previous: np.ndarray | None = None
        self._previous_points: Any = None
        self._previous_descriptors: Any = None

    def apply(self, image: np.ndarray, detection_boxes: np.ndarray) -> np.ndarray:
        """The warp from the previous frame to ``image``; identity on the first frame or on failure."""
        if self.method == "none":
            return np.eye(2, 3)
        height, width = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self.method == "ecc":
            gray = cv2.GaussianBlur(gray, (3, 3), 1.5)
        gray = cv2.resize(gray, (width // self.downscale, height // self.downscale))
        try:
            if self.method == "sparseOptFlow":
                warp = self._optical_flow(gray)
            elif self.method == "ecc":
                warp = self._ecc(gray)
            else:
                warp = self._features(gray, detection_boxes)
        except cv2.error as exc:
            self.failures += 1
            logger.warning("camera-motion estimate (%s) failed, using the identity: %s", self.method, exc)
            warp = None
        self._previous = gray
        if warp is None:
            return np.eye(2, 3)
        warp = np.asarray(warp, dtype=np.float64)
        warp[:, 2] *= self.downscale
        return warp

    def _optical_flow(self, gray: np.ndarray) -> np.ndarray | None:
        points = cv2.goodFeaturesToTrack(
            gray,
            maxCorners=400,
            qualityLevel=0.01,
            minDistance=0,
            blockSize=3,
            useHarrisDetector=False,
            k=0.04,
        )
        previous, previous_points = self._previous, self._previous_points
        self._previous_points = points
        if previous is None or previous_points is None:
            return None
        moved, status, _ = _cv2.calcOpticalFlowPyrLK(previous, gray, previous_points, None)
        good = status.ravel().astype(bool)
        return self._affine(previous_points[good], moved[good])

    def _ecc(self, gray: np.ndarray) -> np.ndarray | None:
        if self._previous is None:
            return None
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 5000, 1e-6)
        _, warp = _cv2.findTransformECC(
            self._previous, gray, np.eye(2, 3, dtype=np.float32), cv2.MOTION_EUCLIDEAN, criteria, None, 1
        )
        return np.asarray(warp)

    def _features(self, gray: np.ndarray, detection_boxes: np.ndarray) -> np.ndarray | None:
        height, width = gray.shape
        mask = np.zeros_like(gray)
        mask[int(0.02 * height) : int(0.98 * height), int(0.02 * width) : int(0.98 * width)] = 255
        for box in np.asarray(detection_boxes).reshape(-1, 4):  # people move; the background does not
            x1, y1, x2, y2 = (box / self.downscale).astype(int)
            mask[max(y1, 0) : y2, max(x1, 0) : x2] = 0
        keypoints = self._detector.detect(gray, mask)
        keypoints, descriptors = self._extractor.compute(gray, keypoints)
        previous_points, previous_descriptors = self._previous_points, self._previous_descriptors
        self._previous_points, self._previous_descriptors = keypoints, descriptors
        if previous_descriptors is None or descriptors is None or self._previous is None:
            return None
        before, after = [], []
        max_shift = 0.25 * np.array([width, height])
        for pair in self._matcher.knnMatch(previous_descriptors, descriptors, 2):
            if len(pair) == 2 and pair[0].distance < 0.9 * pair[1].distance:
                p = np.array(previous_points[pair[0].queryIdx].pt)
                q = np.array(keypoints[pair[0].trainIdx].pt)
                if np.all(np.abs(q - p) < max_shift):
                    before.append(p)
                    after.append(q)
        if not before:
            return None
        shifts = np.array(after) - np.array(before)
        inliers = np.all(np.abs(shifts - shifts.mean(0)) <= 2.5 * shifts.std(0), axis=1)
        return self._affine(np.array(before)[inliers], np.array(after)[inliers])

    def _affine(self, before: np.ndarray, after: np.ndarray) -> np.ndarray | None:
        if len(before) <= 4:
            return None
        warp, _ = cv2.estimateAffinePartial2D(before, after, method=cv2.RANSAC)
        return warp


class BotSortTracker(BotSortKalmanMixin, ByteTracker):
    """ByteTrack's association with BoT-SORT's Kalman state and camera-motion compensation.

    Args:
        gmc_method: how camera motion is estimated (see :class:`CameraMotion`); ``none`` for fixed cameras.
        **kwargs: ByteTrack's thresholds (:class:`~agent.tracking.bytetrack.ByteTracker`).
    """

    def __init__(self, *, gmc_method: str = "sparseOptFlow", **kwargs: Any) -> None:
        self.camera_motion = CameraMotion(gmc_method)
        super().__init__(**kwargs)

    def reset(self) -> None:
        super().reset()
        self.camera_motion.reset()

    def _compensate_motion(self, image: np.ndarray, detection_boxes: np.ndarray, tracks: list[Track]) -> None:
        warp = self.camera_motion.apply(image, detection_boxes)
        if not tracks or np.allclose(warp, np.eye(2, 3)):
            return
        rotation = warp[:, :2]
        transform = np.kron(np.eye(4), rotation)
        transform[2:4, 2:4] = transform[6:8, 6:8] = np.abs(rotation)  # sizes scale but never flip sign
        for track in tracks:
            assert track.mean is not None and track.covariance is not None
            track.mean = transform @ track.mean
            track.mean[:2] += warp[:, 2]
            track.covariance = transform @ track.covariance @ transform.T
