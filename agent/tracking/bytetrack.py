"""ByteTrack (Zhang et al., ECCV 2022) in NumPy: no torch, no ultralytics.

A port of the algorithm of the reference implementation (github.com/ifzhang/ByteTrack, MIT), with
the thresholds and lifecycle that ultralytics' ``BYTETracker`` exposes, so that configs written for
it keep their meaning:

1. high-score detections (>= ``track_high_thresh``) are matched to confirmed and lost tracks on
   1 - IoU with the Kalman-predicted boxes (fused with the detection score when ``fuse_score``),
   pairs costing up to ``match_thresh``;
2. low-score detections (``track_low_thresh`` < score < ``track_high_thresh``) are matched to the
   confirmed tracks still unmatched, on 1 - IoU up to 0.5; tracks still unmatched become lost;
3. unconfirmed tracks (seen on one frame) take the remaining high-score detections (cost up to
   0.7) or are dropped;
4. remaining detections scoring at least ``new_track_thresh`` start unconfirmed tracks (confirmed at
   once on the tracker's very first frame);
5. lost tracks unmatched for more than ``max_frames_lost`` frames are removed.

Each instance owns its state and id counter; :meth:`ByteTracker.reset` restarts it.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator

import numpy as np

from agent.tracking.association import fuse_score, iou_matrix, linear_assignment
from agent.tracking.kalman import KalmanXYAH, KalmanXYWH

SECOND_ROUND_MAX_COST = 0.5  # 1 - IoU, low-score detections to tracks (ByteTrack's value)
UNCONFIRMED_MAX_COST = 0.7  # 1 - IoU, one-frame tracks to the leftover detections
DUPLICATE_MAX_COST = 0.15  # 1 - IoU under which a tracked and a lost track are the same object

Kalman = KalmanXYAH | KalmanXYWH


class TrackState(enum.IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


class Track:
    """One track of a ByteTrack-family tracker: Kalman state and the detection it last matched."""

    def __init__(self, box: np.ndarray, score: float, class_id: int, index: int, kalman: Kalman) -> None:
        self.box = np.asarray(box, dtype=np.float64)  # the detection's own xyxy box, pixels
        self.score = float(score)
        self.class_id = int(class_id)
        self.index = int(index)  # row of the matched detection in this frame's input
        self.kalman = kalman
        self.mean: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.track_id = 0
        self.state = TrackState.NEW
        self.is_activated = False
        self.frame_id = 0  # tracker frame number of the last match
        self.start_frame = 0

    @property
    def xyxy(self) -> np.ndarray:
        """The Kalman estimate of the box (the detection box before the track starts), pixels."""
        return self.box.copy() if self.mean is None else self.kalman.to_xyxy(self.mean)

    def activate(self, track_id: int, frame_id: int) -> None:
        self.track_id = track_id
        self.mean, self.covariance = self.kalman.initiate(self.kalman.from_xyxy(self.box))
        self.state = TrackState.TRACKED
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def update(self, detection: Track, frame_id: int) -> None:
        """Take ``detection`` as this track's new measurement (also when found again after being lost)."""
        assert self.mean is not None and self.covariance is not None
        self.mean, self.covariance = self.kalman.update(
            self.mean, self.covariance, self.kalman.from_xyxy(detection.box)
        )
        self.box, self.score = detection.box, detection.score
        self.class_id, self.index = detection.class_id, detection.index
        self.state = TrackState.TRACKED
        self.is_activated = True
        self.frame_id = frame_id

    def __repr__(self) -> str:
        return f"Track({self.track_id}, {self.state.name}, frames {self.start_frame}-{self.frame_id})"


class ByteTracker:
    """ByteTrack over one camera's frames; see the module docstring for the algorithm.

    Args:
        track_high_thresh: detector confidence from which a detection joins the first round.
        track_low_thresh: confidence above which a weaker detection joins the second round.
        new_track_thresh: confidence from which an unmatched detection starts a track.
        max_frames_lost: frames a lost track is held to be found again (already scaled to the rate).
        match_thresh: highest first-round cost (1 - IoU, score-fused) of an accepted pair.
        fuse_score: multiply IoU by the detection confidence in the first round.
    """

    def __init__(
        self,
        *,
        track_high_thresh: float = 0.25,
        track_low_thresh: float = 0.1,
        new_track_thresh: float = 0.25,
        max_frames_lost: int = 30,
        match_thresh: float = 0.8,
        fuse_score: bool = True,
    ) -> None:
        self.track_high_thresh = track_high_thresh
        self.track_low_thresh = track_low_thresh
        self.new_track_thresh = new_track_thresh
        self.max_frames_lost = max_frames_lost
        self.match_thresh = match_thresh
        self.fuse_score = fuse_score
        self.reset()

    def make_kalman(self) -> Kalman:
        return KalmanXYAH()

    def reset(self) -> None:
        """Drop every track and restart the id counter at 1."""
        self.tracked: list[Track] = []  # confirmed and unconfirmed tracks matched on the last frame
        self.lost: list[Track] = []
        self.frame_id = 0
        self.kalman = self.make_kalman()
        self._ids: Iterator[int] = itertools.count(1)

    def update(
        self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, image: np.ndarray | None = None
    ) -> np.ndarray:
        """Associate one frame's detections with the tracks.

        Args:
            xyxy: (N, 4) detection boxes in pixels.
            scores: (N,) detector confidences.
            class_ids: (N,) class ids.
            image: the frame (BGR), used by trackers that compensate camera motion.

        Returns:
            (M, 2) int64 rows of [track id, detection row] for the confirmed tracks matched on this frame.
        """
        self.frame_id += 1
        xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        class_ids = np.asarray(class_ids).reshape(-1)
        valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        high = valid & (scores >= self.track_high_thresh)
        low = valid & (scores > self.track_low_thresh) & (scores < self.track_high_thresh)
        detections = self._candidates(xyxy, scores, class_ids, high)
        detections_second = self._candidates(xyxy, scores, class_ids, low)
        activated: list[Track] = []
        lost: list[Track] = []

        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]
        pool = confirmed + [t for t in self.lost if t.track_id not in {c.track_id for c in confirmed}]
        self._predict(pool)
        if image is not None:
            self._compensate_motion(image, xyxy[high], pool + unconfirmed)

        # 1. High-score detections against confirmed and lost tracks.
        matches, unmatched_tracks, unmatched_dets = linear_assignment(
            self._costs(pool, detections), self.match_thresh
        )
        for t, d in matches:
            pool[t].update(detections[d], self.frame_id)
            activated.append(pool[t])

        # 2. Low-score detections against the confirmed tracks left over.
        remaining = [pool[t] for t in unmatched_tracks if pool[t].state == TrackState.TRACKED]
        cost = 1 - iou_matrix(self._boxes(remaining), self._boxes(detections_second))
        matches, still_unmatched, _ = linear_assignment(cost, SECOND_ROUND_MAX_COST)
        for t, d in matches:
            remaining[t].update(detections_second[d], self.frame_id)
            activated.append(remaining[t])
        for t in still_unmatched:
            remaining[t].state = TrackState.LOST
            lost.append(remaining[t])

        # 3. One-frame tracks against the high-score detections left over.
        leftover = [detections[d] for d in unmatched_dets]
        matches, unmatched_unconfirmed, new_dets = linear_assignment(
            self._costs(unconfirmed, leftover), UNCONFIRMED_MAX_COST
        )
        for t, d in matches:
            unconfirmed[t].update(leftover[d], self.frame_id)
            activated.append(unconfirmed[t])
        for t in unmatched_unconfirmed:
            unconfirmed[t].state = TrackState.REMOVED

        # 4. New tracks; 5. expired lost tracks.
        for d in new_dets:
            if leftover[d].score >= self.new_track_thresh:
                leftover[d].activate(next(self._ids), self.frame_id)
                activated.append(leftover[d])
        expired = []
        for track in self.lost:
            if track.state == TrackState.LOST and self.frame_id - track.frame_id > self.max_frames_lost:
                track.state = TrackState.REMOVED
                expired.append(track)

        self._merge(activated, lost, expired)
        rows = [(t.track_id, t.index) for t in self.tracked if t.is_activated]
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def lost_ids(self) -> set[int]:
        """Ids of the lost tracks still held to be found again."""
        return {t.track_id for t in self.lost if t.state == TrackState.LOST}

    def forget(self, track_id: int) -> None:
        """Drop a lost track at once (its object was found again under another track)."""
        self.lost = [t for t in self.lost if t.track_id != track_id]

    def _candidates(
        self, xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, mask: np.ndarray
    ) -> list[Track]:
        return [Track(xyxy[i], scores[i], class_ids[i], int(i), self.kalman) for i in np.flatnonzero(mask)]

    @staticmethod
    def _boxes(tracks: list[Track]) -> np.ndarray:
        return np.array([t.xyxy for t in tracks]).reshape(-1, 4)

    def _costs(self, tracks: list[Track], detections: list[Track]) -> np.ndarray:
        cost = 1 - iou_matrix(self._boxes(tracks), self._boxes(detections))
        if self.fuse_score:
            cost = fuse_score(cost, np.array([d.score for d in detections]))
        return cost

    def _predict(self, tracks: list[Track]) -> None:
        if not tracks:
            return
        means = np.array([t.mean for t in tracks])
        for i, track in enumerate(tracks):
            if track.state != TrackState.TRACKED:
                self._freeze_size(means[i])
        covariances = np.array([t.covariance for t in tracks])
        means, covariances = self.kalman.multi_predict(means, covariances)
        for track, mean, covariance in zip(tracks, means, covariances, strict=True):
            track.mean, track.covariance = mean, covariance

    @staticmethod
    def _freeze_size(mean: np.ndarray) -> None:
        """A lost track keeps moving but stops growing or shrinking (height velocity zeroed)."""
        mean[7] = 0

    def _compensate_motion(self, image: np.ndarray, detection_boxes: np.ndarray, tracks: list[Track]) -> None:
        """Hook for camera-motion compensation; ByteTrack assumes a fixed camera."""

    def _merge(self, activated: list[Track], lost: list[Track], expired: list[Track]) -> None:
        """End-of-frame bookkeeping: tracked, lost and removed pools, duplicates resolved.

        A lost track that expired on this frame stays in the pool until the next frame's
        association, which may still match it, as in the reference implementation and ultralytics
        (kept so that both give the same ids); :meth:`lost_ids` no longer reports it.
        """
        tracked = [t for t in self.tracked if t.state == TrackState.TRACKED]
        ids = {t.track_id for t in tracked}
        for track in activated:
            if track.track_id not in ids:
                tracked.append(track)
                ids.add(track.track_id)
        expired_ids = {t.track_id for t in expired}
        held = [
            t
            for t in self.lost
            if (t.state == TrackState.LOST or t.track_id in expired_ids) and t.track_id not in ids
        ]
        held_ids = {t.track_id for t in held}
        held += [t for t in lost if t.track_id not in held_ids]
        self.tracked, self.lost = self._remove_duplicates(tracked, held)

    def _remove_duplicates(self, tracked: list[Track], lost: list[Track]) -> tuple[list[Track], list[Track]]:
        """A tracked and a lost track on the same box are one object: keep the longer-lived one."""
        if not tracked or not lost:
            return tracked, lost
        cost = 1 - iou_matrix(self._boxes(tracked), self._boxes(lost))
        drop_tracked, drop_lost = set(), set()
        for p, q in zip(*np.nonzero(cost < DUPLICATE_MAX_COST), strict=True):
            age_p = tracked[p].frame_id - tracked[p].start_frame
            age_q = lost[q].frame_id - lost[q].start_frame
            if age_p > age_q:
                drop_lost.add(int(q))
            else:
                drop_tracked.add(int(p))
        return (
            [t for i, t in enumerate(tracked) if i not in drop_tracked],
            [t for i, t in enumerate(lost) if i not in drop_lost],
        )


class BotSortKalmanMixin:
    """BoT-SORT's Kalman state (centre, width, height): a lost track keeps its width and height."""

    def make_kalman(self) -> Kalman:
        return KalmanXYWH()

    @staticmethod
    def _freeze_size(mean: np.ndarray) -> None:
        mean[6] = mean[7] = 0
