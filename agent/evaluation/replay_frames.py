"""Re-run the decision layer over recorded frame records, without any model.

``watchword run --jsonl`` writes one record per analysed frame with the calibrated samples taken in
it (``samples``, or ``cue_samples`` from behaviour cues), its track events, its media time and, when
the scored queries changed, their columns. Feeding those records back, one at a time, through the
same :class:`~agent.decision.core.DecisionCore` the live agent fed (pooling, hysteresis, fair
selection, the candidate queue, episodes, cooldowns, what the LMM said) gives the alerts the run
gave, in seconds. Thresholds, pooling and cooldowns come from the replay's config and registry, so
they can be changed and judged on the same footage.

With the re-ranker (:mod:`agent.evaluation.replay_rerank`) the LMM is called on the core's thread:
media time stands still during a call, so a replay decides the same way on every run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.config import AgentConfig
from agent.decision.core import DecisionCore, RunClock
from agent.decision.records import NO_PIXELS, FrameRecord, FrameRecordError, media_time_of
from agent.decision.verifier import InlineVerifier
from agent.evaluation.replay_rerank import FramePixels, PixelStage
from agent.matching.stage import CandidateStage
from agent.queries import Query

log = logging.getLogger(__name__)

__all__ = [
    "NO_PIXELS",
    "Footage",
    "FrameRecordError",
    "FrameReplay",
    "ReplayResult",
    "ReplayedAlert",
    "media_time_of",
    "read_records",
    "replay_frames",
]


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


class ReplayQueries:
    """The replay's queries by id: what the core looks a recorded column up in."""

    def __init__(self, queries: Iterable[Query]) -> None:
        self._by_id = {q.id: q for q in queries}

    def __call__(self, query_id: int) -> Query | None:
        return self._by_id.get(query_id)

    def all(self) -> list[Query]:
        return list(self._by_id.values())


class FrameReplay:
    """The decision core of one agent config, fed frame records one at a time.

    With a ``stage`` (the re-ranker, its budget on ``run_clock``) candidates that may open an
    alert go through the core's queue to it, as in the live agent, decided on the core's thread.
    """

    def __init__(
        self,
        config: AgentConfig,
        queries: list[Query],
        stage: CandidateStage | None = None,
        run_clock: RunClock | None = None,
        pixels: FramePixels | None = None,
    ) -> None:
        self.events: list[AlertEvent] = []
        self._sizes: dict[str, tuple[int, int]] = {}
        if stage is not None and pixels is not None:
            stage = PixelStage(stage, pixels, self._sample_frame)
        self.core = DecisionCore(
            config.matching,
            config.alerts,
            ReplayQueries(queries),
            self.events.extend,
            verifier=None if stage is None else InlineVerifier(stage),
            model_versions={"replay": "frames"},
            run_clock=run_clock,
        )
        self.footage = Footage()
        self.frames = 0

    def feed_record(self, record: dict[str, Any]) -> None:
        """One JSON frame record (see :mod:`agent.decision.records`)."""
        self.feed(FrameRecord.from_json(record))

    def _sample_frame(self, camera_id: str, track_id: int) -> tuple[float | None, int, int] | None:
        """The pts and analysed size of a track's latest sample (where to read its pixels)."""
        state = self.core.book.tracks.get((camera_id, track_id))
        if state is None or state.frame is None:
            return None
        width, height = self._sizes.get(camera_id, (0, 0))
        return state.frame.pts_s, width, height

    def feed(self, record: FrameRecord) -> None:
        self.frames += 1
        self._sizes[record.camera_id] = (record.width, record.height)
        if not record.camera_ended:
            self.footage.add(record.camera_id, record.media_time)
        self.core.feed(record)

    def finish(self) -> ReplayResult:
        """Close what is open (as at shutdown) and return the alerts opened, in order."""
        self.core.finish()
        stats = self.core.stats()
        return ReplayResult(
            alerts=opened_alerts(self.events),
            footage=self.footage,
            frames=self.frames,
            windows=stats.windows,
            candidates=stats.candidates,
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
    stage: CandidateStage | None = None,
    run_clock: RunClock | None = None,
    pixels: FramePixels | None = None,
) -> ReplayResult:
    """Replay the decision core of ``config`` with ``queries`` over the frame records in ``path``
    (re-ranking with ``stage``, whose budget runs on ``run_clock``, on frames from ``pixels``)."""
    replay = FrameReplay(config, queries, stage, run_clock, pixels)
    for number, record in enumerate(read_records(path), 1):
        try:
            replay.feed_record(record)
        except FrameRecordError as exc:
            raise FrameRecordError(f"{path}:{number}: {exc}") from exc
    return replay.finish()
