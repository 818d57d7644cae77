"""Typed containers passed between pipeline stages (one container per stage boundary)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame of one camera.

    Attributes:
        camera_id: the camera's id from the config.
        index: frame number within this camera's analysed stream, starting at 0 and never reset,
            not even across reconnects.
        pts_s: presentation timestamp in seconds from the stream (None when the stream has none);
            it may restart after a reconnect.
        wall_time: UNIX time in seconds when the frame left the decoder.
        image: BGR ``uint8`` array of shape (height, width, 3), owned by this frame.
        live: whether the frame comes from a live camera (RTSP, USB, a live test source) rather than
            a file or another source that can be read faster than real time.
    """

    camera_id: str
    index: int
    pts_s: float | None
    wall_time: float
    image: np.ndarray
    live: bool = False

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(
                f"Frame.image must be HxWx3 uint8 BGR, got {self.image.dtype} {self.image.shape}"
            )

    @property
    def media_time(self) -> float:
        """Seconds on the clock decisions run on: the pts for a file, wall time for a live camera.

        A recording then behaves as the live camera it came from, however fast it is analysed, and
        gives the same decisions on every run. A file frame without a pts falls back to wall time.
        """
        if self.live or self.pts_s is None:
            return self.wall_time
        return self.pts_s

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _as_array(value: Any, dtype: Any, name: str, n: int | None, tail: tuple[int, ...] = ()) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        raise ValueError(
            f"Detections.{name} must have shape (N{''.join(f', {t}' for t in tail)}), got {array.shape}"
        )
    if n is not None and len(array) != n:
        raise ValueError(f"Detections.{name} has {len(array)} rows, expected {n}")
    return array


@dataclass
class Detections:
    """Detections of one frame as parallel arrays (N rows each).

    Attributes:
        xyxy: (N, 4) float32 boxes as x1, y1, x2, y2 in pixels of the analysed frame.
        confidence: (N,) float32 detector scores in [0, 1].
        class_id: (N,) int64 COCO class ids (0 is person).
        tracker_id: (N,) int64 track ids, or None before tracking.
        data: extra per-detection arrays (each with N rows), for example embeddings.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = _as_array(self.xyxy, np.float32, "xyxy", None, (4,))
        n = len(self.xyxy)
        self.confidence = _as_array(self.confidence, np.float32, "confidence", n)
        self.class_id = _as_array(self.class_id, np.int64, "class_id", n)
        if self.tracker_id is not None:
            self.tracker_id = _as_array(self.tracker_id, np.int64, "tracker_id", n)
        for key, value in self.data.items():
            value = np.asarray(value)
            if len(value) != n:
                raise ValueError(f"Detections.data[{key!r}] has {len(value)} rows, expected {n}")
            self.data[key] = value

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | int | list[int]) -> Detections:
        """Select rows by boolean mask, integer indices or slice: ``dets[dets.confidence > 0.5]``."""
        if isinstance(index, int):
            index = [index]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={key: value[index] for key, value in self.data.items()},
        )

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    @property
    def area(self) -> np.ndarray:
        """Box areas in square pixels."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]).clip(0) * (self.xyxy[:, 3] - self.xyxy[:, 1]).clip(0)


class TrackEventKind(str, enum.Enum):
    """What happened to a track on a frame."""

    NEW = "new"
    UPDATED = "updated"
    LOST = "lost"
    REMOVED = "removed"


@dataclass(frozen=True)
class TrackEvent:
    """A change in a track's life, with its first/last seen times (UNIX seconds) and frame count."""

    kind: TrackEventKind
    camera_id: str
    track_id: int
    frame_index: int
    first_seen: float
    last_seen: float
    frames_seen: int
    box: tuple[float, float, float, float] | None = None
    score: float | None = None


@dataclass
class Candidate:
    """A (track, standing query) pair whose pooled, calibrated score passed the query's threshold.

    Produced by the matcher once per window, optionally re-ranked and verified by the LMM stage,
    then turned into an alert episode by the alert manager.

    Attributes:
        camera_id, track_id: the track on its camera.
        query_id, query_text: the standing query.
        score: pooled calibrated coarse score in [0, 1] (probability that the query beats the normal prompts).
        cosine: raw cosine of the latest track embedding and the query embedding.
        wall_time: UNIX seconds of ``frame`` (when it was decoded).
        frame_index: the camera's frame index of ``frame``.
        box: x1, y1, x2, y2 of the track in ``frame``, pixels.
        frame: the full BGR frame the candidate was scored on (evidence and LMM input).
        severity: the query's severity label.
        score_history: (media time, pooled score) of this pair over the track's life.
        model_versions: name -> version/hash of the models that produced the score.
        fused_score: the re-ranker's fused score, or None when not re-ranked.
        verified: True when the re-ranker verified it, False when it rejected it, else None.
        rationale: the re-ranker's explanation (blanks, answers, agreements), or None.
        media_time: seconds of ``frame`` on the decision clock (:attr:`Frame.media_time`); None
            falls back to ``wall_time``.
        cooldown_s: the query's cooldown in seconds; None uses ``alerts.cooldown_s``.
        pose: behaviour-cue evidence of the track (cue values, their evidence and history, the
            latest keypoints in ``frame``'s pixels), when pose cues are on; None otherwise.
    """

    camera_id: str
    track_id: int
    query_id: int
    query_text: str
    score: float
    cosine: float
    wall_time: float
    frame_index: int
    box: tuple[float, float, float, float]
    frame: np.ndarray
    severity: str = "warning"
    score_history: list[tuple[float, float]] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    fused_score: float | None = None
    verified: bool | None = None
    rationale: dict[str, Any] | None = None
    media_time: float | None = None
    cooldown_s: float | None = None
    pose: dict[str, Any] | None = None

    @property
    def time_s(self) -> float:
        """When the candidate was scored, on the decision clock (media time, else wall time)."""
        return self.wall_time if self.media_time is None else self.media_time

    # verify: the re-ranker's conclusion (verified, rejected, unverified; None: not re-ranked) and,
    # for unverified, why (no_answer, budget, deadline, error)
    verification: str | None = None
    verification_reason: str | None = None

    @property
    def final_score(self) -> float:
        """The score the alert manager ranks by: fused when re-ranked, else the coarse score."""
        return self.fused_score if self.fused_score is not None else self.score

    def crop(self, padding: float = 0.1) -> np.ndarray:
        """The person crop from ``frame`` with ``padding`` (fraction of box size) around the box."""
        height, width = self.frame.shape[:2]
        x1, y1, x2, y2 = self.box
        pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
        left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
        right, bottom = min(width, round(x2 + pad_x)), min(height, round(y2 + pad_y))
        if right <= left or bottom <= top:
            return self.frame[0:1, 0:1].copy()
        return self.frame[top:bottom, left:right].copy()


@dataclass
class FrameResult:
    """One analysed frame after tracking, passed to the analysers and then to the outputs.

    ``extra`` holds what analysers add to the frame's JSON line (e.g. per-track query scores).
    """

    frame: Frame
    tracks: Detections
    events: list[TrackEvent]
    extra: dict[str, Any] = field(default_factory=dict)
