"""Zones: named polygons per camera (``cameras[].zones``) that a standing query can be limited to.

Points are normalised to the camera image, ``x`` and ``y`` from 0 (left, top) to 1 (right, bottom),
so a zone stays put when ``max_width``/``max_height`` or the camera's resolution change. A track is
in a zone while its foot point (the bottom centre of its box) is inside the polygon (even-odd rule).
The sample producers (CLIP matcher, cue matcher) sample a zone-limited query for a track only while
it is in one of the query's zones on that camera, and :class:`ZoneDwell` keeps since when, so its
duration cues count time in the zone only; the decision core knows nothing of zones. Search and
try-before-save filter the search index's views by their foot points with :meth:`ZoneBook.in_any`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.queries import Query
    from agent.sources.config import CameraConfig

Polygon = Sequence[Sequence[float]]


def inside(polygon: Polygon, x: float, y: float) -> bool:
    """Whether the point (``x``, ``y``) (normalised) is inside ``polygon`` (even-odd rule)."""
    hit = False
    count = len(polygon)
    for i in range(count):
        x1, y1 = polygon[i][0], polygon[i][1]
        x2, y2 = polygon[(i + 1) % count][0], polygon[(i + 1) % count][1]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            hit = not hit
    return hit


def foot_point(box: Sequence[float], width: int, height: int) -> tuple[float, float]:
    """The bottom centre of a box ``xyxy`` in pixels of a ``width`` x ``height`` image, normalised."""
    return (float(box[0]) + float(box[2])) / 2.0 / max(width, 1), float(box[3]) / max(height, 1)


class ZoneBook:
    """The zones of each camera, read from ``cameras`` (re-read when ``revision`` changes, at most
    every ``interval_s`` seconds of wall time).

    Args:
        cameras: the cameras now (the runtime camera store's, or the config's).
        revision: changes whenever the cameras change (None: read once).
        interval_s: how often ``revision`` is asked, seconds.
    """

    def __init__(
        self,
        cameras: Callable[[], list[CameraConfig]],
        revision: Callable[[], int] | None = None,
        interval_s: float = 0.2,
    ) -> None:
        self._cameras = cameras
        self._revision = revision
        self._interval_s = interval_s
        self._seen: int | None = None
        self._checked = -float("inf")
        self._zones: dict[str, dict[str, list[list[float]]]] = {}
        self._lock = threading.Lock()
        self._load()

    @classmethod
    def fixed(cls, cameras: list[CameraConfig]) -> ZoneBook:
        """Zones of a fixed camera list (replay, calibration)."""
        return cls(lambda: cameras)

    def _load(self) -> None:
        self._zones = {
            camera.id: {zone.name: [list(p) for p in zone.points] for zone in camera.zones}
            for camera in self._cameras()
        }

    def refresh(self) -> None:
        """Re-read the cameras if their revision changed (checked at most every ``interval_s``)."""
        if self._revision is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self._interval_s:
                return
            self._checked = now
            revision = self._revision()
            if revision != self._seen:
                self._seen = revision
                self._load()

    def zones(self, camera_id: str) -> dict[str, list[list[float]]]:
        """The camera's zones by name (points normalised)."""
        return self._zones.get(camera_id, {})

    def allows(self, query: Query, camera_id: str, point: tuple[float, float]) -> bool:
        """Whether ``query`` is sampled for a track whose foot point is ``point`` (normalised): always
        for a query without zones, else only inside one of its zones on this camera."""
        if not query.zones:
            return True
        return self.in_any(query.zones, camera_id, point)

    def in_any(self, names: Sequence[str], camera_id: str, point: tuple[float, float]) -> bool:
        """Whether ``point`` (normalised) is in one of the zones ``names`` of this camera."""
        polygons = self.zones(camera_id)
        return any(name in polygons and inside(polygons[name], *point) for name in names)

    def names(self) -> frozenset[str]:
        """The zone names any camera has."""
        return frozenset(name for zones in self._zones.values() for name in zones)


def zone_mask(
    book: ZoneBook | None,
    queries: Sequence[Query],
    camera_id: str,
    box: Sequence[float],
    width: int,
    height: int,
) -> list[bool]:
    """Per query, whether the track with ``box`` (pixels) may be sampled for it on this camera."""
    if book is None or not any(q.zones for q in queries):
        return [True] * len(queries)
    point = foot_point(box, width, height)
    return [book.allows(q, camera_id, point) for q in queries]


class ZoneDwell:
    """Since when (media seconds) each track is in each zone-limited query's zones, so a duration
    cue (``still_long``, ``ground_long``) of such a query counts time inside the zone only: someone
    still for 20 s outside who steps in has been still in the zone for 0 s. Leaving the zones
    forgets the entry; coming back starts anew. Used by the cue matcher (pose only) and by the
    CLIP matcher for its blended cues (pose and CLIP)."""

    def __init__(self) -> None:
        self._entered: dict[tuple[str, int, int], float] = {}  # (camera, track, query id) -> media s

    def update(
        self, camera_id: str, track_id: int, queries: Sequence[Query], mask: Sequence[bool], now: float
    ) -> None:
        """Record where the track is at media time ``now``: ``mask`` per query, in its zones or not."""
        for query, is_inside in zip(queries, mask, strict=True):
            if not query.zones:
                continue
            key = (camera_id, int(track_id), query.id)
            if is_inside:
                self._entered.setdefault(key, now)
            else:
                self._entered.pop(key, None)

    def forget(self, camera_id: str, track_id: int) -> None:
        """The track ended."""
        for key in [k for k in self._entered if k[0] == camera_id and k[1] == int(track_id)]:
            del self._entered[key]

    def entered(self, camera_id: str, track_id: int, query: Query) -> float | None:
        """Media seconds when the track last entered ``query``'s zones; None when the query has no
        zones or the track is not in them."""
        return self._entered.get((camera_id, int(track_id), query.id)) if query.zones else None

    def in_zone_s(self, camera_id: str, track_id: int, query: Query, now: float) -> float:
        """Seconds the track has been in ``query``'s zones at media time ``now``: ``inf`` for a query
        without zones, 0 for a track not in them."""
        if not query.zones:
            return float("inf")
        entered = self.entered(camera_id, track_id, query)
        return 0.0 if entered is None else max(0.0, now - entered)

    def evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, object] | None:
        """``{"zones", "in_zone_s"}`` at media time ``frame_time`` (the entry when None) for a
        zone-limited query whose track is in its zones; else None."""
        entered = self.entered(camera_id, track_id, query)
        if entered is None:
            return None
        at = entered if frame_time is None else max(frame_time, entered)
        return {"zones": list(query.zones or []), "in_zone_s": round(at - entered, 2)}
