"""Alert episodes: one per (camera, query, track), opened, updated and closed; a cooldown per (camera, query).

Pure logic without I/O or clocks: every call carries its time (UNIX seconds), so the behaviour can be
checked on hand-made candidate sequences.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.types import Candidate

log = logging.getLogger(__name__)

EpisodeKey = tuple[str, int, int]  # camera_id, query_id, track_id


class AlertEventKind(str, enum.Enum):
    """What happened to an episode."""

    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


class CloseReason(str, enum.Enum):
    """Why an episode closed."""

    TRACK_ENDED = "track_ended"
    QUIET = "quiet"
    SHUTDOWN = "shutdown"
    RESTART = "agent_restart"


@dataclass(frozen=True)
class CandidateSnapshot:
    """The parts of a :class:`Candidate` an episode keeps (everything but the frame)."""

    score: float
    cosine: float
    wall_time: float
    frame_index: int
    box: tuple[float, float, float, float]
    fused_score: float | None
    verified: bool | None
    rationale: dict[str, Any] | None
    score_history: tuple[tuple[float, float], ...]
    model_versions: dict[str, str]

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateSnapshot:
        x1, y1, x2, y2 = (float(v) for v in candidate.box)
        return cls(
            score=float(candidate.score),
            cosine=float(candidate.cosine),
            wall_time=float(candidate.wall_time),
            frame_index=int(candidate.frame_index),
            box=(x1, y1, x2, y2),
            fused_score=None if candidate.fused_score is None else float(candidate.fused_score),
            verified=candidate.verified,
            rationale=None if candidate.rationale is None else dict(candidate.rationale),
            score_history=tuple((float(t), float(s)) for t, s in candidate.score_history),
            model_versions=dict(candidate.model_versions),
        )

    @property
    def final_score(self) -> float:
        return self.fused_score if self.fused_score is not None else self.score


@dataclass
class Episode:
    """One alert: a track that matched a standing query on a camera, from open to close.

    Attributes:
        alert_id: stable id of the alert (a UUID), shared by all its events.
        seq: sequence number of the latest event (0 for "opened").
        started_at, last_seen, ended_at: UNIX seconds of the first and latest accepted candidate and
            of the close.
        last_event_at: UNIX seconds of the latest opened/updated event.
        candidates: accepted candidates so far.
        peak_score: highest final score so far.
        latest: the latest accepted candidate, without its frame.
    """

    alert_id: str
    camera_id: str
    query_id: int
    query_text: str
    track_id: int
    severity: str
    started_at: float
    last_seen: float
    last_event_at: float
    peak_score: float
    latest: CandidateSnapshot
    seq: int = 0
    candidates: int = 1
    ended_at: float | None = None
    close_reason: CloseReason | None = None

    @property
    def key(self) -> EpisodeKey:
        return (self.camera_id, self.query_id, self.track_id)


@dataclass(frozen=True)
class AlertEvent:
    """An episode event to deliver: ``episode`` is a snapshot taken when the event happened.

    ``candidate`` is the candidate that caused an opened/updated event (its frame is the evidence);
    None for closed events.
    """

    kind: AlertEventKind
    episode: Episode
    candidate: Candidate | None = None

    @property
    def alert_id(self) -> str:
        return self.episode.alert_id

    @property
    def seq(self) -> int:
        return self.episode.seq


@dataclass
class EpisodeCounters:
    """What the tracker did with the candidates it was given."""

    opened: int = 0
    updated: int = 0
    closed: int = 0
    suppressed_cooldown: int = 0
    rejected_unverified: int = 0


@dataclass
class EpisodeTracker:
    """Turns accepted candidates into opened/updated/closed episode events.

    Args:
        cooldown_s: after an episode opens for a (camera, query), a candidate of another track on
            that pair opens nothing for this many seconds (counted from that open).
        quiet_s: :meth:`tick` closes an episode with no accepted candidate for this many seconds.
        update_interval_s: at most one "updated" event per episode this often; a change of the
            re-ranker's verdict (``verified``) is reported at once.
        require_verified: only candidates with ``verified is True`` open episodes. A candidate the
            re-ranker rejected (``verified is False``) never opens one.
    """

    cooldown_s: float = 60.0
    quiet_s: float = 30.0
    update_interval_s: float = 10.0
    require_verified: bool = False
    counters: EpisodeCounters = field(default_factory=EpisodeCounters)
    _open: dict[EpisodeKey, Episode] = field(default_factory=dict, init=False, repr=False)
    _last_open_at: dict[tuple[str, int], float] = field(default_factory=dict, init=False, repr=False)

    def reset(self) -> None:
        """Forget all open episodes, cooldowns and counts."""
        self._open.clear()
        self._last_open_at.clear()
        self.counters = EpisodeCounters()

    @property
    def open_episodes(self) -> list[Episode]:
        """Snapshots of the open episodes, oldest first."""
        return [dataclasses.replace(e) for e in sorted(self._open.values(), key=lambda e: e.started_at)]

    def accept(self, candidate: Candidate) -> AlertEvent | None:
        """Take one accepted candidate at its ``wall_time``; return the event it causes, if any."""
        now = float(candidate.wall_time)
        key: EpisodeKey = (candidate.camera_id, int(candidate.query_id), int(candidate.track_id))
        episode = self._open.get(key)
        if episode is not None:
            return self._update(episode, candidate, now)
        if candidate.verified is False or (self.require_verified and candidate.verified is not True):
            self.counters.rejected_unverified += 1
            return None
        pair = key[:2]
        last_open = self._last_open_at.get(pair)
        if last_open is not None and now - last_open < self.cooldown_s:
            self.counters.suppressed_cooldown += 1
            log.debug("camera %s query %d track %d: in cooldown", *key)
            return None
        snapshot = CandidateSnapshot.of(candidate)
        episode = Episode(
            alert_id=str(uuid.uuid4()),
            camera_id=key[0],
            query_id=key[1],
            query_text=candidate.query_text,
            track_id=key[2],
            severity=candidate.severity,
            started_at=now,
            last_seen=now,
            last_event_at=now,
            peak_score=snapshot.final_score,
            latest=snapshot,
        )
        self._open[key] = episode
        self._last_open_at[pair] = now
        self.counters.opened += 1
        return AlertEvent(AlertEventKind.OPENED, dataclasses.replace(episode), candidate)

    def _update(self, episode: Episode, candidate: Candidate, now: float) -> AlertEvent | None:
        previous = episode.latest
        snapshot = CandidateSnapshot.of(candidate)
        episode.latest = snapshot
        episode.last_seen = max(episode.last_seen, now)
        episode.candidates += 1
        episode.peak_score = max(episode.peak_score, snapshot.final_score)
        verdict_changed = snapshot.verified != previous.verified
        if not verdict_changed and now - episode.last_event_at < self.update_interval_s:
            return None
        episode.seq += 1
        episode.last_event_at = now
        self.counters.updated += 1
        return AlertEvent(AlertEventKind.UPDATED, dataclasses.replace(episode), candidate)

    def track_ended(self, camera_id: str, track_id: int, now: float) -> list[AlertEvent]:
        """Close every episode of a track that ended at ``now`` (UNIX seconds)."""
        keys = [k for k in self._open if k[0] == camera_id and k[2] == int(track_id)]
        return [self._close(key, now, CloseReason.TRACK_ENDED) for key in keys]

    def tick(self, now: float) -> list[AlertEvent]:
        """Close episodes quiet for ``quiet_s`` and forget expired cooldowns."""
        quiet = [k for k, e in self._open.items() if now - e.last_seen >= self.quiet_s]
        # A quiet episode ended when its track was last seen, not when the tick noticed.
        events = [self._close(key, self._open[key].last_seen, CloseReason.QUIET) for key in quiet]
        expired = [pair for pair, at in self._last_open_at.items() if now - at >= self.cooldown_s]
        for pair in expired:
            del self._last_open_at[pair]
        return events

    def close_all(self, now: float, reason: CloseReason = CloseReason.SHUTDOWN) -> list[AlertEvent]:
        """Close every open episode (at shutdown)."""
        return [self._close(key, now, reason) for key in list(self._open)]

    def _close(self, key: EpisodeKey, now: float, reason: CloseReason) -> AlertEvent:
        episode = self._open.pop(key)
        episode.seq += 1
        episode.ended_at = max(now, episode.last_seen)
        episode.close_reason = reason
        self.counters.closed += 1
        return AlertEvent(AlertEventKind.CLOSED, dataclasses.replace(episode))
