"""One JSON line per analysed frame per camera."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, TextIO

from agent.types import Detections, Frame, TrackEvent


def frame_record(frame: Frame, tracks: Detections, events: list[TrackEvent]) -> dict[str, Any]:
    """The JSON-serialisable record of one analysed frame.

    Boxes are x1, y1, x2, y2 in pixels of the analysed frame (``width`` x ``height``).
    ``media_time`` is the frame's time on the decision clock (:attr:`Frame.media_time`), written
    unrounded so that a replay of the record decides exactly as the run did.
    """
    ids = tracks.tracker_id if tracks.tracker_id is not None else [-1] * len(tracks)
    return {
        "camera": frame.camera_id,
        "frame": frame.index,
        "pts": None if frame.pts_s is None else round(frame.pts_s, 6),
        "wall_time": round(frame.wall_time, 6),
        "media_time": frame.media_time,
        "width": frame.width,
        "height": frame.height,
        "tracks": [
            {
                "id": int(track_id),
                "box": [round(float(v), 1) for v in box],
                "score": round(float(score), 4),
            }
            for track_id, box, score in zip(ids, tracks.xyxy, tracks.confidence, strict=True)
        ],
        "events": [
            {"kind": event.kind.value, "id": event.track_id}
            for event in events
            if event.kind.value != "updated"
        ],
    }


class JsonlWriter:
    """Appends whole lines and flushes each, so a reader never sees a partial record."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
