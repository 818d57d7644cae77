"""The best frame per (track, query): where the query's sample (CLIP score or cue) peaked.

The evidence crop and frame of an alert, and the picture the LMM is shown, are taken there rather
than at the track's latest sample: a "standing still" alert shows the person standing still, not
mid-stride as they walk off. Decision state of the core (:mod:`agent.decision.core`), kept while the
track lives; ties go to the later frame (a cue that saturates shows its latest moment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Peak:
    """One (track, query)'s highest sample: its calibrated value, the frame (a ``Frame``) and box."""

    value: float
    frame: Any
    box: Box


class PeakFrames:
    """Per (camera, track, query id), the frame of the highest sample so far."""

    def __init__(self) -> None:
        self._peaks: dict[tuple[str, int, int], Peak] = {}
        self._hashes: dict[int, str] = {}  # query id -> the text hash its peaks were taken under

    def observe(
        self, camera_id: str, track_id: int, query_id: int, value: float, frame: Any, box: Box
    ) -> None:
        """A sample of ``value`` taken on ``frame`` with the track at ``box`` (pixels)."""
        key = (camera_id, int(track_id), int(query_id))
        peak = self._peaks.get(key)
        if frame is not None and (peak is None or value >= peak.value):
            self._peaks[key] = Peak(float(value), frame, box)

    def get(self, camera_id: str, track_id: int, query_id: int) -> Peak | None:
        return self._peaks.get((camera_id, int(track_id), int(query_id)))

    def forget_track(self, camera_id: str, track_id: int) -> None:
        for key in [k for k in self._peaks if k[0] == camera_id and k[1] == track_id]:
            del self._peaks[key]

    def keep_queries(self, hashes: dict[int, str]) -> None:
        """The scored queries now, {query id: text hash}: peaks of a query removed or edited go."""
        stale = {q for q, h in self._hashes.items() if hashes.get(q) != h}
        self._hashes = dict(hashes)
        if stale:
            self._peaks = {k: v for k, v in self._peaks.items() if k[2] not in stale}

    def forget_camera(self, camera_id: str) -> None:
        self._peaks = {k: v for k, v in self._peaks.items() if k[0] != camera_id}

    def __len__(self) -> int:
        return len(self._peaks)
