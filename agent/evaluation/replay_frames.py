"""Re-run the decision layer over recorded frame records, without any model.

``watchword run --jsonl`` writes one record per analysed frame with the calibrated probability of
each sample taken in it (``samples``), its track events and its media time. Feeding those back
through the same :class:`~agent.matching.trackbook.TrackBook` (pooling, hysteresis, fair selection)
and :class:`~agent.alerts.episodes.EpisodeTracker` (cooldown, episodes), frame by frame as the live
matcher and alert feed did, gives the alerts the run gave, in seconds. Thresholds, pooling and
cooldowns come from the replay's config and registry, so they can be changed and judged on the same
footage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.alerts.episodes import AlertEvent, AlertEventKind, CloseReason, EpisodeTracker
from agent.alerts.feed import AlertFeed
from agent.config import AgentConfig
from agent.evaluation.replay_rerank import FramePixels, ReplayVerifier
from agent.matching.scoring import PoolingParams
from agent.matching.trackbook import TrackBook
from agent.queries import Query
from agent.types import Candidate, Detections, Frame, FrameResult, TrackEvent, TrackEventKind

log = logging.getLogger(__name__)

# Frame records hold no pixels: candidates of a frames replay carry this 1x1 stand-in image.
NO_PIXELS = np.zeros((1, 1, 3), np.uint8)


class FrameRecordError(ValueError):
    """A frame record file that cannot be replayed; the message names the line."""


@dataclass(frozen=True)
class ReplayedAlert:
    """One alert a replay opened: where, for which query and person, and when (media seconds)."""

    camera: str
    query_id: int
    track_id: int
    time_s: float
    severity: str
    score: float
    verified: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "query_id": self.query_id,
            "track_id": self.track_id,
            "time_s": round(self.time_s, 3),
            "severity": self.severity,
            "score": round(self.score, 4),
            "verified": self.verified,
        }


@dataclass
class Footage:
    """Media seconds covered per camera (first to last frame, plus one frame period)."""

    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)

    def add(self, camera: str, time_s: float) -> None:
        self.first.setdefault(camera, time_s)
        self.last[camera] = time_s
        self.frames[camera] = self.frames.get(camera, 0) + 1

    @property
    def seconds(self) -> float:
        total = 0.0
        for camera, first in self.first.items():
            span = self.last[camera] - first
            count = self.frames[camera]
            total += span + (span / (count - 1) if count > 1 else 0.0)
        return total


@dataclass
class ReplayResult:
    alerts: list[ReplayedAlert]
    footage: Footage
    frames: int
    windows: int = 0
    candidates: int = 0


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The frame records of a ``watchword run --jsonl`` file, in order."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FrameRecordError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            if not isinstance(record, dict) or "camera" not in record or "frame" not in record:
                raise FrameRecordError(f"{path}:{number}: not a frame record (needs camera and frame)")
            yield record


def media_time_of(record: dict[str, Any]) -> float:
    """A record's decision time: ``media_time`` when recorded, else its pts, else its wall time."""
    for key in ("media_time", "pts", "wall_time"):
        value = record.get(key)
        if value is not None:
            return float(value)
    raise FrameRecordError(f"frame {record.get('frame')} of camera {record.get('camera')}: no time")


class _TrackerClock:
    """Lets the :class:`AlertFeed` drive a bare episode tracker, collecting the events."""

    def __init__(self, tracker: EpisodeTracker, events: list[AlertEvent]) -> None:
        self.tracker = tracker
        self.events = events

    def on_track_event(self, event: TrackEvent, media_time: float | None = None) -> object:
        if event.kind is TrackEventKind.REMOVED:
            now = event.last_seen if media_time is None else media_time
            self.events += self.tracker.track_ended(event.camera_id, event.track_id, now)
        return None

    def tick(self, media_time: float | None = None, camera_id: str | None = None) -> object:
        assert media_time is not None
        self.events += self.tracker.tick(media_time, camera_id)
        return None


class FrameReplay:
    """The decision layer of one agent config, fed frame records one at a time.

    With a ``verifier`` (the re-ranker on media time) and ``pixels`` (the recordings), candidates
    that may open an alert are re-ranked first, as in the live agent.
    """

    def __init__(
        self,
        config: AgentConfig,
        queries: list[Query],
        verifier: ReplayVerifier | None = None,
        pixels: FramePixels | None = None,
    ) -> None:
        self.verifier = verifier
        self.pixels = pixels
        self._sizes: dict[str, tuple[int, int]] = {}
        matching = config.matching
        params = PoolingParams(matching.ema_alpha, matching.pool_window_s, matching.exit_margin)
        self.book = TrackBook(params, matching.window_s, matching.top_k, matching.history)
        thresholds = np.array(
            [q.threshold if q.threshold is not None else matching.default_threshold for q in queries],
            np.float32,
        )
        self.book.set_queries(queries, thresholds, [str(q.id) for q in queries])
        self._column = {str(q.id): i for i, q in enumerate(queries)}
        alerts = config.alerts
        self.tracker = EpisodeTracker(
            cooldown_s=alerts.cooldown_s,
            quiet_s=alerts.episode_quiet_s,
            update_interval_s=alerts.update_interval_s,
            require_verified=alerts.require_verified,
            unverified_policy=alerts.unverified.action,
        )
        self.events: list[AlertEvent] = []
        self.feed = AlertFeed(_TrackerClock(self.tracker, self.events))
        self.footage = Footage()
        self.frames = 0
        self.windows = 0
        self.candidates = 0
        self.model_versions = {"replay": "frames"}

    def feed_record(self, record: dict[str, Any]) -> None:
        """One frame: removals, its samples, the camera's window, then track events and quiet ticks."""
        camera = str(record["camera"])
        now = media_time_of(record)
        self._sizes[camera] = (int(record.get("width") or 0), int(record.get("height") or 0))
        if self.verifier is not None:
            self.verifier.clock.now = now
        self.frames += 1
        self.footage.add(camera, now)
        frame = Frame(
            camera_id=camera,
            index=int(record["frame"]),
            pts_s=record.get("pts"),
            wall_time=float(record.get("wall_time") or 0.0),
            image=NO_PIXELS,
        )
        events = [
            TrackEvent(TrackEventKind(e["kind"]), camera, int(e["id"]), frame.index, now, now, 0)
            for e in record.get("events", [])
            if e.get("kind") in {k.value for k in TrackEventKind}
        ]
        for event in events:
            if event.kind is TrackEventKind.REMOVED:
                self.book.remove(camera, event.track_id)
        boxes = {int(t["id"]): tuple(float(v) for v in t["box"]) for t in record.get("tracks", [])}
        for track_id, per_query in (record.get("samples") or {}).items():
            self._sample(frame, now, int(track_id), per_query, boxes.get(int(track_id)))
        if self.book.window_due(camera, now):
            self.windows += 1
            pending = self.verifier.pending() if self.verifier is not None else frozenset()
            for pick in self.book.select(camera, now, self.tracker.alert_state(), pending):
                candidate = self.book.candidate(camera, pick, now, self.model_versions)
                self.candidates += int(pick.opens)
                if pick.opens and self.verifier is not None and self._add_pixels(candidate):
                    self.verifier.put(candidate)
                else:
                    self._accept(candidate, pick.opens)
        if self.verifier is not None:
            for candidate in self.verifier.decided():
                self._accept(candidate, True)
        self.feed.frame(FrameResult(frame, Detections.empty(), events))

    def _accept(self, candidate: Candidate, opens: bool) -> None:
        accepted = self.tracker.accept(candidate, opens=opens)
        if accepted is not None:
            self.events.append(accepted)

    def _add_pixels(self, candidate: Candidate) -> bool:
        """Give the candidate its frame from the recording; False (unverified) when there is none."""
        state = self.book.tracks[(candidate.camera_id, candidate.track_id)]
        if self.pixels is None or state.frame is None:
            return False
        width, height = self._sizes.get(candidate.camera_id, (0, 0))
        image = self.pixels.image(candidate.camera_id, state.frame.pts_s, width, height)
        if image is None:
            return False
        candidate.frame = image
        return True

    def _sample(
        self,
        frame: Frame,
        now: float,
        track_id: int,
        per_query: dict[str, float],
        box: tuple[float, ...] | None,
    ) -> None:
        size = len(self.book.queries)
        probability = np.full(size, np.nan, np.float32)
        columns = np.zeros(size, bool)
        for query_id, p in per_query.items():
            column = self._column.get(query_id)
            if column is not None:
                probability[column], columns[column] = p, True
        if not columns.any():
            return
        state = self.book.get(frame.camera_id, track_id)
        state.frame = frame
        if box is not None and len(box) == 4:
            state.box = (box[0], box[1], box[2], box[3])
        self.book.add_sample(state, now, probability, np.full(size, np.nan, np.float32), columns=columns)

    def finish(self) -> ReplayResult:
        """Close what is open (as at shutdown) and return the alerts opened, in order."""
        self.events += self.tracker.close_all(CloseReason.SHUTDOWN)
        return ReplayResult(
            alerts=opened_alerts(self.events),
            footage=self.footage,
            frames=self.frames,
            windows=self.windows,
            candidates=self.candidates,
        )


def opened_alerts(events: Iterable[AlertEvent]) -> list[ReplayedAlert]:
    """The alerts that opened, from a stream of episode events."""
    alerts = []
    for event in events:
        if event.kind is not AlertEventKind.OPENED:
            continue
        episode = event.episode
        alerts.append(
            ReplayedAlert(
                camera=episode.camera_id,
                query_id=episode.query_id,
                track_id=episode.track_id,
                time_s=episode.started_at,
                severity=episode.severity,
                score=episode.latest.final_score,
                verified=episode.latest.verified,
            )
        )
    return alerts


def replay_frames(
    path: Path,
    config: AgentConfig,
    queries: list[Query],
    verifier: ReplayVerifier | None = None,
) -> ReplayResult:
    """Replay the decision layer of ``config`` with ``queries`` over the frame records in ``path``
    (re-ranking with ``verifier``, the pixels read back from the recordings the config names)."""
    pixels = FramePixels(config) if verifier is not None else None
    if pixels is not None and not pixels.paths:
        log.warning("no camera of the config names a recording: candidates pass on unverified")
    replay = FrameReplay(config, queries, verifier, pixels)
    try:
        for record in read_records(path):
            replay.feed_record(record)
    finally:
        if pixels is not None:
            pixels.close()
    return replay.finish()
