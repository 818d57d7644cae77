"""One camera's multi-object tracker with track lifecycle events."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from agent.tracking.backends import TrackerBackend, TrackerInput, held_lost_ids
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
    """Tracks detections across one camera's frames and reports each track's lifecycle.

    Each :meth:`update` returns the frame's tracked detections and events, in this order:

    - ``NEW`` on the first frame a track is output (not also ``UPDATED`` on that frame);
    - ``UPDATED`` on every later frame it is output (also when found again after being lost);
    - ``LOST`` once, on the first frame it is not output while the tracker still holds it;
    - ``REMOVED`` once, when the tracker drops it (lost longer than its buffer, or merged away).

    The backend's own track ids are mapped onto ids of this camera, counted from 1 in order of
    first output, so ids are dense and independent of other cameras and of the backend version.
    The tracker counts analysed frames: frames dropped before analysis do not age lost tracks.
    """

    def __init__(self, camera_id: str, backend: TrackerBackend, name: str) -> None:
        self.camera_id = camera_id
        self.name = name
        self._backend = backend
        self._tracks: dict[int, TrackInfo] = {}  # our id -> info, for tracks output and not yet removed
        self._our_id: dict[int, int] = {}  # backend id -> our id
        self._next_id = 1
        self._last_frame_index = -1

    def update(self, frame: Frame, detections: Detections) -> tuple[Detections, list[TrackEvent]]:
        """Associate ``detections`` of ``frame`` with this camera's tracks.

        Args:
            frame: the analysed frame (its image feeds BoT-SORT's camera-motion compensation).
            detections: the frame's detections, boxes in the frame's pixels.

        Returns:
            The detections that belong to a confirmed track (box, confidence, class and data of the
            detection itself, ``tracker_id`` set), in the order the tracker output them, and the
            lifecycle events of this frame.
        """
        # Rows are [x1, y1, x2, y2, backend id, score, class, detection index]; none is an empty (0,) array.
        rows = np.asarray(self._backend.update(TrackerInput.from_detections(detections), frame.image))
        if rows.size == 0:
            rows = np.zeros((0, 8))
        backend_ids = rows[:, 4].astype(np.int64)
        indices = rows[:, 7].astype(np.int64)
        tracked = detections[indices]
        tracked.tracker_id = np.array(
            [self._map_id(backend_id) for backend_id in backend_ids], dtype=np.int64
        )
        self._last_frame_index = frame.index

        events = [self._observe(frame, tracked[i]) for i in range(len(tracked))]
        output = set(tracked.tracker_id.tolist())

        held = {self._our_id.get(backend_id) for backend_id in held_lost_ids(self._backend)}
        for track_id in [t for t in self._tracks if t not in output]:
            info = self._tracks[track_id]
            if track_id in held:
                if not info.lost:
                    self._tracks[track_id] = replace(info, lost=True)
                    events.append(self._event(TrackEventKind.LOST, info, frame.index))
            else:
                del self._tracks[track_id]
                events.append(self._event(TrackEventKind.REMOVED, info, frame.index))
        self._forget_backend_ids()
        return tracked, events

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

    def reset(self) -> list[TrackEvent]:
        """Drop every track and restart ids at 1, for example after the source reconnects.

        Returns:
            A ``REMOVED`` event for each track that was still held.
        """
        events = [
            self._event(TrackEventKind.REMOVED, info, self._last_frame_index)
            for info in self._tracks.values()
        ]
        self._backend.reset()
        self._tracks.clear()
        self._our_id.clear()
        self._next_id = 1
        logger.debug(
            "tracker %s of camera %s reset, %d tracks dropped", self.name, self.camera_id, len(events)
        )
        return events

    def _map_id(self, backend_id: int) -> int:
        track_id = self._our_id.get(backend_id)
        if track_id is None:
            track_id = self._our_id[backend_id] = self._next_id
            self._next_id += 1
        return track_id

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
