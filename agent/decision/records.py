"""What the decision core is fed: one frame record at a time, live or read back from a file.

A :class:`FrameRecord` holds what one analysed frame of one camera brings to the decisions: its
media time, its tracks' boxes and lifecycle events, the calibrated samples the producers (the CLIP
matcher, the cue matcher) took in it, and, when the query columns changed just before it, the new
columns. ``watchword run --jsonl`` writes each record as a JSON line (:func:`frame_record` plus
what the analysers add), and ``watchword eval replay --frames`` reads them back with
:meth:`FrameRecord.from_json`, so the live agent and the replay feed the same
:class:`~agent.decision.core.DecisionCore` the same things.

Keys the producers add to a frame's ``extra`` (and so to its JSON line):

* ``samples``: {track id: {query id: p}}, calibrated probabilities rounded to 6 decimals (CLIP);
* ``cue_samples``: the same, from behaviour cues (the cue matcher, without CLIP);
* ``cosines``: {track id: {query id: cosine}} of the CLIP samples (payload only, not decisions);
* ``columns``: [[query id, text hash], ...] when the scored queries changed (added, edited,
  removed) before this frame: an edited text starts its column afresh;
* ``camera_ended``: true on the record that ends a camera changed or removed at run time (its
  events remove every person it still had).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.types import Frame, FrameResult, TrackEvent, TrackEventKind

Box = tuple[float, float, float, float]

# Frame records hold no pixels: candidates of a frames replay carry this 1x1 stand-in image.
NO_PIXELS = np.zeros((1, 1, 3), np.uint8)
SAMPLE_KEYS = ("samples", "cue_samples")
_KINDS = {kind.value: kind for kind in TrackEventKind}


class FrameRecordError(ValueError):
    """A frame record that cannot be fed to the decisions; the message says why."""


def media_time_of(record: Mapping[str, Any]) -> float:
    """A JSON record's decision time: ``media_time`` when recorded, else its pts, else its wall time."""
    for key in ("media_time", "pts", "wall_time"):
        value = record.get(key)
        if value is not None:
            return float(value)
    raise FrameRecordError(f"frame {record.get('frame')} of camera {record.get('camera')}: no time")


def _per_track(value: object) -> dict[int, dict[int, float]]:
    """{track id: {query id: value}} from its JSON form (string keys)."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[int, dict[int, float]] = {}
    for track_id, per_query in value.items():
        if isinstance(per_query, Mapping):
            out[int(track_id)] = {int(q): float(p) for q, p in per_query.items()}
    return out


def _merge(*parts: dict[int, dict[int, float]]) -> dict[int, dict[int, float]]:
    merged: dict[int, dict[int, float]] = {}
    for part in parts:
        for track_id, per_query in part.items():
            merged.setdefault(track_id, {}).update(per_query)
    return merged


@dataclass
class FrameRecord:
    """One analysed frame of one camera, as the decisions see it.

    Attributes:
        camera_id: the camera.
        frame_index: the camera's frame index.
        media_time: seconds on the camera's decision clock (:attr:`Frame.media_time`).
        wall_time: UNIX seconds when the frame was decoded (payload times, and the tracks' last sight).
        events: the frame's track events (``updated`` ones are not recorded).
        boxes: each track's box in this frame, x1, y1, x2, y2 pixels.
        samples: {track id: {query id: calibrated probability}} taken in this frame.
        cosines: {track id: {query id: cosine}} of those samples where known (CLIP).
        columns: (query id, text hash) of every scored query, when they changed before this frame.
        camera_ended: the camera is changed or removed: this record ends it.
        frame: the frame with its pixels (live only: the evidence and the LMM's image).
        sample_frames: per track, the frame and box a sample was taken on when not this one (the
            pose sample's frame, so its keypoints are drawn on the person); live only.
    """

    camera_id: str
    frame_index: int
    media_time: float
    wall_time: float = 0.0
    pts_s: float | None = None
    width: int = 0
    height: int = 0
    events: list[TrackEvent] = field(default_factory=list)
    boxes: dict[int, Box] = field(default_factory=dict)
    samples: dict[int, dict[int, float]] = field(default_factory=dict)
    cosines: dict[int, dict[int, float]] = field(default_factory=dict)
    columns: list[tuple[int, str]] | None = None
    camera_ended: bool = False
    frame: Frame | None = None
    sample_frames: dict[int, tuple[Frame, Box]] = field(default_factory=dict)

    @property
    def removed(self) -> list[int]:
        """Track ids removed in this frame."""
        return [e.track_id for e in self.events if e.kind is TrackEventKind.REMOVED]

    def stand_in_frame(self) -> Frame:
        """The frame to give a candidate: the live one, else a 1x1 stand-in with this record's times."""
        if self.frame is not None:
            return self.frame
        return Frame(self.camera_id, self.frame_index, self.pts_s, self.wall_time, NO_PIXELS)

    @classmethod
    def from_result(cls, result: FrameResult) -> FrameRecord:
        """The record of a live frame after the producers ran (they put their keys in ``extra``)."""
        frame, extra = result.frame, result.extra
        ids = result.tracks.tracker_id
        boxes: dict[int, Box] = {}
        if ids is not None:
            for track_id, box in zip(ids.tolist(), result.tracks.xyxy, strict=True):
                boxes[int(track_id)] = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        columns = extra.get("columns")
        return cls(
            camera_id=frame.camera_id,
            frame_index=frame.index,
            media_time=frame.media_time,
            wall_time=frame.wall_time,
            pts_s=frame.pts_s,
            width=frame.width,
            height=frame.height,
            events=[e for e in result.events if e.kind is not TrackEventKind.UPDATED],
            boxes=boxes,
            samples=_merge(*(_per_track(extra.get(key)) for key in SAMPLE_KEYS)),
            cosines=_per_track(extra.get("cosines")),
            columns=None if columns is None else [(int(q), str(h)) for q, h in columns],
            camera_ended=bool(extra.get("camera_ended")),
            frame=frame,
            sample_frames=dict(extra.get("_sample_frames") or {}),
        )

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> FrameRecord:
        """A record read back from a ``--jsonl`` line (see the module docstring for its keys)."""
        try:
            camera = str(record["camera"])
            index = int(record["frame"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameRecordError("not a frame record (needs camera and frame)") from exc
        now = media_time_of(record)
        events = [
            TrackEvent(_KINDS[e["kind"]], camera, int(e["id"]), index, now, now, 0)
            for e in record.get("events") or []
            if isinstance(e, Mapping) and e.get("kind") in _KINDS and e["kind"] != "updated"
        ]
        boxes: dict[int, Box] = {}
        for track in record.get("tracks") or []:
            box = track.get("box") if isinstance(track, Mapping) else None
            if box is not None and len(box) == 4:
                boxes[int(track["id"])] = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        columns = record.get("columns")
        pts = record.get("pts")
        return cls(
            camera_id=camera,
            frame_index=index,
            media_time=now,
            wall_time=float(record.get("wall_time") or 0.0),
            pts_s=None if pts is None else float(pts),
            width=int(record.get("width") or 0),
            height=int(record.get("height") or 0),
            events=events,
            boxes=boxes,
            samples=_merge(*(_per_track(record.get(key)) for key in SAMPLE_KEYS)),
            cosines=_per_track(record.get("cosines")),
            columns=None if columns is None else [(int(q), str(h)) for q, h in columns],
            camera_ended=bool(record.get("camera_ended")),
        )


def columns_json(columns: Iterable[tuple[int, str]]) -> list[list[object]]:
    """The ``columns`` key of a record."""
    return [[int(q), str(h)] for q, h in columns]
