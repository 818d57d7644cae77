"""One camera's multi-object tracker with track lifecycle events."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from agent.tracking.backends import TrackerBackend
from agent.tracking.reassociation import Embedder, Reassociator
from agent.types import Detections, Frame, TrackEvent, TrackEventKind

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackInfo:
    """What is known about one track.

    Attributes:
        track_id: this camera's id of the track, from 1, dense in order of first output.
        class_id: class of the last matched detection.
        first_seen: UNIX time in seconds (``Frame.wall_time``) of the first frame it was output on.
        last_seen: UNIX time in seconds of the last frame it was output on.
        first_frame_index: ``Frame.index`` of that first frame.
        last_frame_index: ``Frame.index`` of that last frame.
        frames_seen: number of frames it was output on.
        box: last matched detection box x1, y1, x2, y2 in pixels.
        score: last matched detection's confidence.
        lost: whether it went unmatched on the latest frame and is held to be found again.
    """

    track_id: int
    class_id: int
    first_seen: float
    last_seen: float
    first_frame_index: int
    last_frame_index: int
    frames_seen: int
    box: Box
    score: float
    lost: bool = False


class CameraTracker:
    """Tracks detections across one camera's frames and reports each person's lifecycle.

    Each :meth:`update` returns the frame's tracked detections and events, in this order:

    - ``NEW`` on the first frame a person is output (not also ``UPDATED`` on that frame);
    - ``UPDATED`` on every later frame they are output (also when found again after being lost,
      by the tracker or by re-association);
    - ``LOST`` once, on the first frame they are not output while they can still come back: the
      tracker holds their track, or re-association may still give them a new track;
    - ``REMOVED`` once, when they can no longer come back (the tracker dropped their track and
      ``max_gap_s`` of media time passed since they were last seen, or the track was merged away).

    Ids are this camera's person ids, counted from ``first_id`` (1) in order of first output, dense and
    independent of other cameras and of the tracker's own ids. When a re-associator is given
    (:mod:`agent.tracking.reassociation`), a new track that continues a recently lost person takes
    that person's id, so one person keeps one id through detector misses and short occlusions.
    The tracker counts analysed frames: frames dropped before analysis do not age lost tracks.
    Re-association runs on media time (:attr:`Frame.media_time`: a file's pts, a live camera's wall
    time, since a live stream's pts restart when it reconnects); a time that goes backwards ends
    every re-association window.
    """

    def __init__(
        self,
        camera_id: str,
        backend: TrackerBackend,
        name: str,
        reassociator: Reassociator | None = None,
        first_id: int = 1,
    ) -> None:
        self.camera_id = camera_id
        self.name = name
        self._backend = backend
        self._reassociator = reassociator
        self._tracks: dict[int, TrackInfo] = {}  # our id -> info, for tracks output and not yet removed
        self._pending: dict[int, float] = {}  # backend id held back -> media time first held back
        # backend id -> our id; a re-associated person has several
        self._our_id: dict[int, int] = {}
        self._first_id = first_id
        self._next_id = first_id
        self._last_frame_index = -1

    @property
    def reassociations(self) -> int:
        """New tracks that took a lost person's id since this tracker was built."""
        return 0 if self._reassociator is None else self._reassociator.reassociated

    @property
    def appearance_embedder(self) -> Embedder | None:
        """The image embedder re-association compares people with (None: colour histograms)."""
        return None if self._reassociator is None else self._reassociator.embedder

    def set_appearance_embedder(self, embedder: Embedder | None) -> None:
        """Compare people by this image embedder (e.g. CLIP's ``embed_images``) instead of colour histograms.

        Called with BGR crops only when a new track has a lost person within the time and position
        gates, so it costs an embedding or two per re-association, not per frame.
        """
        if self._reassociator is not None:
            self._reassociator.set_embedder(embedder)

    def update(self, frame: Frame, detections: Detections) -> tuple[Detections, list[TrackEvent]]:
        """Associate ``detections`` of ``frame`` with this camera's people.

        Args:
            frame: the analysed frame (its image feeds camera-motion compensation and appearance).
            detections: the frame's detections, boxes in the frame's pixels.

        Returns:
            The detections that belong to a confirmed track (box, confidence, class and data of the
            detection itself, ``tracker_id`` set to the person id), in the order the tracker output
            them, and the lifecycle events of this frame.
        """
        rows = self._backend.update(detections.xyxy, detections.confidence, detections.class_id, frame.image)
        pts = frame.media_time  # a live camera's wall time: its pts restart when it reconnects
        person_ids, shown = self._person_ids(rows[:, 0], detections.xyxy[rows[:, 1]], frame, pts)
        tracked = detections[rows[shown, 1]]
        tracked.tracker_id = person_ids[shown]
        self._last_frame_index = frame.index

        events = [self._observe(frame, tracked[i]) for i in range(len(tracked))]
        output = set(tracked.tracker_id.tolist())

        held = {self._our_id.get(backend_id) for backend_id in self._backend.lost_ids()}
        for track_id in [t for t in self._tracks if t not in output]:
            info = self._tracks[track_id]
            if track_id in held or (
                self._reassociator is not None and self._reassociator.remembers(track_id, pts)
            ):
                if not info.lost:
                    self._tracks[track_id] = replace(info, lost=True)
                    events.append(self._event(TrackEventKind.LOST, info, frame.index))
            else:
                del self._tracks[track_id]
                if self._reassociator is not None:
                    self._reassociator.forget(track_id)
                events.append(self._event(TrackEventKind.REMOVED, info, frame.index))
        if self._reassociator is not None:
            self._reassociator.observe(pts, frame.image, tracked.tracker_id.tolist(), tracked.xyxy)
        self._forget_backend_ids()
        return tracked, events

    def _person_ids(
        self, backend_ids: np.ndarray, boxes: np.ndarray, frame: Frame, pts: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Person ids of the output rows (-1 for a row held back) and which rows to output.

        A track output for the first time may continue a lost person. When a lost person passes
        the time and position gates but not the appearance gate (the newcomer is often still half
        hidden), the track is held back for up to ``decision_window_s`` and asked again each frame.
        """
        ids: list[int | None] = [self._our_id.get(int(b)) for b in backend_ids]
        shown = np.ones(len(ids), dtype=bool)
        newborn = [i for i, track_id in enumerate(ids) if track_id is None]
        continued: list[int | None] = [None] * len(newborn)
        undecided = [False] * len(newborn)
        if newborn and self._reassociator is not None:
            output = {track_id for track_id in ids if track_id is not None}
            continued, undecided = self._reassociator.match(pts, frame.image, boxes[newborn], exclude=output)
        for i, person, wait in zip(newborn, continued, undecided, strict=True):
            backend_id = int(backend_ids[i])
            if person is None and wait and self._reassociator is not None:
                first = self._pending.setdefault(backend_id, pts)
                if 0 <= pts - first < self._reassociator.decision_window_s:
                    shown[i] = False
                    continue
            self._pending.pop(backend_id, None)
            if person is None:
                person = self._next_id
                self._next_id += 1
            else:
                for lost_id in self._backend.lost_ids():
                    if self._our_id.get(lost_id) == person:
                        self._backend.forget(lost_id)  # its old track must not come back as a second box
            self._our_id[backend_id] = ids[i] = person
        alive = {int(b) for b in backend_ids}
        self._pending = {b: t for b, t in self._pending.items() if b in alive}
        return np.array([-1 if t is None else t for t in ids], dtype=np.int64), shown

    def _observe(self, frame: Frame, row: Detections) -> TrackEvent:
        """Record that the track of the one-row ``row`` was output on ``frame``; return NEW or UPDATED."""
        assert row.tracker_id is not None
        track_id = int(row.tracker_id[0])
        x1, y1, x2, y2 = (float(v) for v in row.xyxy[0])
        box, score, class_id = (x1, y1, x2, y2), float(row.confidence[0]), int(row.class_id[0])
        info = self._tracks.get(track_id)
        if info is None:
            info = TrackInfo(
                track_id=track_id,
                class_id=class_id,
                first_seen=frame.wall_time,
                last_seen=frame.wall_time,
                first_frame_index=frame.index,
                last_frame_index=frame.index,
                frames_seen=1,
                box=box,
                score=score,
            )
            kind = TrackEventKind.NEW
        else:
            info = replace(
                info,
                class_id=class_id,
                last_seen=frame.wall_time,
                last_frame_index=frame.index,
                frames_seen=info.frames_seen + 1,
                box=box,
                score=score,
                lost=False,
            )
            kind = TrackEventKind.UPDATED
        self._tracks[track_id] = info
        return self._event(kind, info, frame.index)

    def active_tracks(self) -> dict[int, TrackInfo]:
        """Tracks output at least once and not removed yet (lost ones included), by track id."""
        return dict(self._tracks)

    @property
    def next_id(self) -> int:
        """The id the next new person gets (a tracker that replaces this one starts there)."""
        return self._next_id

    def reset(self) -> list[TrackEvent]:
        """Drop every track, for example after the source reconnects; ids go on from where they
        were, so a new person never takes the id of one dropped here.

        Returns:
            A ``REMOVED`` event for each track that was still held.
        """
        events = [
            self._event(TrackEventKind.REMOVED, info, self._last_frame_index)
            for info in self._tracks.values()
        ]
        self._backend.reset()
        if self._reassociator is not None:
            self._reassociator.reset()
        self._tracks.clear()
        self._pending.clear()
        self._our_id.clear()
        logger.debug(
            "tracker %s of camera %s reset, %d tracks dropped", self.name, self.camera_id, len(events)
        )
        return events

    def _forget_backend_ids(self) -> None:
        """Drop id mappings of tracks that are gone, so the map does not grow with the stream."""
        if len(self._our_id) > len(self._tracks):
            self._our_id = {b: ours for b, ours in self._our_id.items() if ours in self._tracks}

    def _event(self, kind: TrackEventKind, info: TrackInfo, frame_index: int) -> TrackEvent:
        return TrackEvent(
            kind=kind,
            camera_id=self.camera_id,
            track_id=info.track_id,
            frame_index=frame_index,
            first_seen=info.first_seen,
            last_seen=info.last_seen,
            frames_seen=info.frames_seen,
            box=info.box,
            score=info.score,
        )

    def __repr__(self) -> str:
        return f"CameraTracker({self.camera_id!r}, {self.name}, {len(self._tracks)} tracks)"
