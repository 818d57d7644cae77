"""Alert episodes: one per (camera, query, track), opened, updated and closed; a cooldown per
(camera, query, track), the query's own or ``alerts.cooldown_s``.

Pure logic without I/O or clocks: every call carries its time, so the behaviour can be checked on
hand-made candidate sequences. Decisions run on media time (a file's pts, a live camera's wall
time; :attr:`agent.types.Frame.media_time`), so a recording replays as its live run did. Wall-clock
times travel beside them for the payload.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.api.metrics import Metric
from agent.types import Candidate

log = logging.getLogger(__name__)

EpisodeKey = tuple[str, int, int]  # camera_id, query_id, track_id


class AlertEventKind(str, enum.Enum):
    """What happened to an episode."""

    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


class PairState(str, enum.Enum):
    """Where a (camera, query, track) stands with the alerts, as candidate selection sees it."""

    IDLE = "idle"
    OPEN = "open"
    COOLING = "cooling"


@dataclass(frozen=True)
class AlertStateView:
    """A snapshot of which (camera, query, track) keys have an open episode or are cooling down.

    Candidate selection consults it once per window: an open key updates its episode, a cooling
    key is skipped, and neither takes a candidate slot.

    Attributes:
        open: keys with an open episode.
        opened_at: media seconds of each key's latest open (kept while a cooldown may still run).
        default_cooldown_s: the cooldown of a query without its own, seconds.
    """

    open: frozenset[EpisodeKey] = frozenset()
    opened_at: Mapping[EpisodeKey, float] = field(default_factory=dict)
    default_cooldown_s: float = 60.0

    def state(self, key: EpisodeKey, now: float, cooldown_s: float | None = None) -> PairState:
        """The key's state at media time ``now`` under ``cooldown_s`` (None: the default)."""
        if key in self.open:
            return PairState.OPEN
        opened = self.opened_at.get(key)
        cooldown = self.default_cooldown_s if cooldown_s is None else cooldown_s
        if opened is not None and now - opened < cooldown:
            return PairState.COOLING
        return PairState.IDLE


class CloseReason(str, enum.Enum):
    """Why an episode closed."""

    TRACK_ENDED = "track_ended"
    QUIET = "quiet"
    SHUTDOWN = "shutdown"
    RESTART = "agent_restart"
    CAMERA_ENDED = "camera_ended"


@dataclass(frozen=True)
class CandidateSnapshot:
    """The parts of a :class:`Candidate` an episode keeps (everything but the frame)."""

    score: float
    cosine: float
    wall_time: float
    media_time: float
    frame_index: int
    box: tuple[float, float, float, float]
    fused_score: float | None
    verified: bool | None
    verification: str | None
    verification_reason: str | None
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
            media_time=float(candidate.time_s),
            frame_index=int(candidate.frame_index),
            box=(x1, y1, x2, y2),
            fused_score=None if candidate.fused_score is None else float(candidate.fused_score),
            verified=candidate.verified,
            verification=candidate.verification,
            verification_reason=candidate.verification_reason,
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
        started_at, last_seen, ended_at: media seconds of the first and latest accepted candidate
            and of the close (the decision clock).
        last_event_at: media seconds of the latest opened/updated event.
        started_wall, last_seen_wall, ended_wall: the same moments in UNIX seconds (for payloads).
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
    started_wall: float = 0.0
    last_seen_wall: float = 0.0
    seq: int = 0
    candidates: int = 1
    ended_at: float | None = None
    ended_wall: float | None = None
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
    late_updates: int = 0
    held_unverified: int = 0

    def event_metrics(self) -> list[Metric]:
        """Alert events by kind (opened, updated, closed): what the alert manager emitted."""
        events = Metric("watchword_alert_events_total", "counter", "Alert events by kind")
        events.add(self.opened, event="opened").add(self.updated, event="updated")
        return [events.add(self.closed, event="closed")]

    def suppressed_metric(self) -> Metric:
        """Candidates not raised, by why: what the decision core's episodes held back."""
        suppressed = Metric("watchword_alerts_suppressed_total", "counter", "Candidates not raised as alerts")
        suppressed.add(self.suppressed_cooldown, reason="cooldown")
        suppressed.add(self.late_updates, reason="late_update")
        suppressed.add(self.rejected_unverified, reason="not_verified")
        return suppressed.add(self.held_unverified, reason="unverified_held")


@dataclass
class EpisodeTracker:
    """Turns accepted candidates into opened/updated/closed episode events.

    Args:
        cooldown_s: after an episode opens for a (camera, query, track), that track opens no other
            episode on that query for this many media seconds (counted from the open); a candidate's
            own ``cooldown_s`` (the query's) takes precedence. Identity keeps one person one track
            id, so this is at most one alert per (camera, query) per cooldown, per person.
        quiet_s: :meth:`tick` closes an episode with no accepted candidate for this many seconds.
        update_interval_s: at most one "updated" event per episode this often; a change of the
            re-ranker's verdict (``verified``) is reported at once.
        require_verified: a candidate that was not re-ranked (``verification`` None) opens no
            episode unless ``verified is True``. A re-ranked one opens an episode when
            ``verified``, never when ``rejected``, and when ``unverified`` only if
            ``unverified_policy(severity)`` is ``"raise"``.
        unverified_policy: severity -> "raise" or "hold" for unverified candidates (default:
            critical raises, others hold).
    """

    cooldown_s: float = 60.0
    quiet_s: float = 30.0
    update_interval_s: float = 10.0
    require_verified: bool = False
    unverified_policy: Callable[[str], str] = field(
        default=lambda severity: "raise" if severity == "critical" else "hold"
    )
    counters: EpisodeCounters = field(default_factory=EpisodeCounters)
    _open: dict[EpisodeKey, Episode] = field(default_factory=dict, init=False, repr=False)
    # key -> (media seconds of the latest open, the cooldown that open started)
    _last_open_at: dict[EpisodeKey, tuple[float, float]] = field(default_factory=dict, init=False, repr=False)

    def reset(self) -> None:
        """Forget all open episodes, cooldowns and counts."""
        self._open.clear()
        self._last_open_at.clear()
        self.counters = EpisodeCounters()

    @property
    def open_episodes(self) -> list[Episode]:
        """Snapshots of the open episodes, oldest first."""
        return [dataclasses.replace(e) for e in sorted(self._open.values(), key=lambda e: e.started_at)]

    def alert_state(self) -> AlertStateView:
        """Which keys are open or were opened recently (what candidate selection consults)."""
        return AlertStateView(
            open=frozenset(self._open),
            opened_at={key: at for key, (at, _) in self._last_open_at.items()},
            default_cooldown_s=self.cooldown_s,
        )

    def accept(self, candidate: Candidate, *, opens: bool = True) -> AlertEvent | None:
        """Take one accepted candidate at its media time; return the event it causes, if any.

        With ``opens`` False the candidate only updates an open episode: one selected to update an
        episode that closed before it arrived is dropped (counted as a late update).
        """
        now = float(candidate.time_s)
        key: EpisodeKey = (candidate.camera_id, int(candidate.query_id), int(candidate.track_id))
        episode = self._open.get(key)
        if episode is not None:
            return self._update(episode, candidate, now)
        if not opens:
            self.counters.late_updates += 1
            return None
        if self._holds(candidate):
            return None
        cooldown = self.cooldown_s if candidate.cooldown_s is None else float(candidate.cooldown_s)
        last_open = self._last_open_at.get(key)
        if last_open is not None and now - last_open[0] < cooldown:
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
            started_wall=snapshot.wall_time,
            last_seen_wall=snapshot.wall_time,
        )
        self._open[key] = episode
        self._last_open_at[key] = (now, cooldown)
        self.counters.opened += 1
        return AlertEvent(AlertEventKind.OPENED, dataclasses.replace(episode), candidate)

    def _holds(self, candidate: Candidate) -> bool:
        """Whether a candidate may not open an episode, by its verification (counted)."""
        state = candidate.verification
        if state == "unverified":
            if self.unverified_policy(candidate.severity) == "raise":
                return False
            self.counters.held_unverified += 1
            return True
        if state == "rejected" or candidate.verified is False:
            self.counters.rejected_unverified += 1
            return True
        if state is None and self.require_verified and candidate.verified is not True:
            self.counters.rejected_unverified += 1
            return True
        return False

    def _update(self, episode: Episode, candidate: Candidate, now: float) -> AlertEvent | None:
        previous = episode.latest
        snapshot = CandidateSnapshot.of(candidate)
        if (
            candidate.fused_score is None
            and candidate.verified is None
            and candidate.verification is None
            and candidate.rationale is None
        ):
            # An update the LMM did not look at (open episodes are not re-ranked): its last word stands.
            snapshot = dataclasses.replace(
                snapshot,
                fused_score=previous.fused_score,
                verified=previous.verified,
                verification=previous.verification,
                verification_reason=previous.verification_reason,
                rationale=previous.rationale,
            )
        episode.latest = snapshot
        if now >= episode.last_seen:
            episode.last_seen = now
            episode.last_seen_wall = snapshot.wall_time
        episode.candidates += 1
        episode.peak_score = max(episode.peak_score, snapshot.final_score)
        verdict_changed = (snapshot.verified, snapshot.verification) != (
            previous.verified,
            previous.verification,
        )
        if not verdict_changed and now - episode.last_event_at < self.update_interval_s:
            return None
        episode.seq += 1
        episode.last_event_at = now
        self.counters.updated += 1
        return AlertEvent(AlertEventKind.UPDATED, dataclasses.replace(episode), candidate)

    def track_ended(
        self, camera_id: str, track_id: int, now: float, wall_time: float | None = None
    ) -> list[AlertEvent]:
        """Close every episode of a track that ended at media time ``now`` (``wall_time``: UNIX s)."""
        keys = [k for k in self._open if k[0] == camera_id and k[2] == int(track_id)]
        return [self._close(key, now, CloseReason.TRACK_ENDED, wall_time) for key in keys]

    def tick(self, now: float, camera_id: str | None = None) -> list[AlertEvent]:
        """Close episodes quiet for ``quiet_s`` at media time ``now`` and forget expired cooldowns.

        With ``camera_id``, only that camera's (each camera has its own media clock).
        """

        def mine(key: EpisodeKey) -> bool:
            return camera_id is None or key[0] == camera_id

        quiet = [k for k, e in self._open.items() if mine(k) and now - e.last_seen >= self.quiet_s]
        # A quiet episode ended when its track was last seen, not when the tick noticed.
        events = [self._close(key, None, CloseReason.QUIET) for key in quiet]
        expired = [
            key
            for key, (at, cooldown) in self._last_open_at.items()
            if mine(key) and key not in self._open and now - at >= cooldown
        ]
        for key in expired:
            del self._last_open_at[key]
        return events

    def close(
        self, key: EpisodeKey, reason: CloseReason, now: float | None = None, wall_time: float | None = None
    ) -> list[AlertEvent]:
        """Close one open episode as ending at media ``now`` (None: when it was last seen)."""
        if key not in self._open:
            return []
        return [self._close(key, now, reason, wall_time)]

    def end_camera(self, camera_id: str, reason: CloseReason = CloseReason.CAMERA_ENDED) -> list[AlertEvent]:
        """A camera changed or removed: close its open episodes and forget its cooldowns."""
        events = [self._close(key, None, reason) for key in list(self._open) if key[0] == camera_id]
        self._last_open_at = {k: v for k, v in self._last_open_at.items() if k[0] != camera_id}
        return events

    def close_all(
        self, reason: CloseReason = CloseReason.SHUTDOWN, wall_time: float | None = None
    ) -> list[AlertEvent]:
        """Close every open episode (at shutdown), each as ending when it was last seen."""
        return [self._close(key, None, reason, wall_time) for key in list(self._open)]

    def _close(
        self, key: EpisodeKey, now: float | None, reason: CloseReason, wall_time: float | None = None
    ) -> AlertEvent:
        episode = self._open.pop(key)
        episode.seq += 1
        episode.ended_at = episode.last_seen if now is None else max(now, episode.last_seen)
        episode.ended_wall = episode.last_seen_wall if wall_time is None else wall_time
        episode.close_reason = reason
        self.counters.closed += 1
        return AlertEvent(AlertEventKind.CLOSED, dataclasses.replace(episode))
