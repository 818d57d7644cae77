"""A real alert manager with the decision core's episode tracker in front of it.

The agent's :class:`~agent.decision.core.DecisionCore` decides what opens, updates and closes an
alert and the :class:`~agent.alerts.manager.AlertManager` only emits. Tests of what the manager
emits (evidence, outbox, hold-back, sinks, crashes) feed it candidates as the core would: each
through the same :class:`~agent.alerts.episodes.EpisodeTracker`, then :meth:`AlertManager.emit`.
"""

from __future__ import annotations

from typing import Any

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, CloseReason, EpisodeTracker
from agent.alerts.manager import AlertManager
from agent.types import Candidate, TrackEvent, TrackEventKind


class DecidingManager(AlertManager):
    """:class:`AlertManager` plus ``submit``, ``on_track_event`` and ``tick_episodes`` (see above)."""

    def __init__(self, config: AlertsConfig, site: str, **kwargs: Any) -> None:
        super().__init__(config, site, **kwargs)
        self.episodes = EpisodeTracker(
            cooldown_s=config.cooldown_s,
            quiet_s=config.episode_quiet_s,
            update_interval_s=config.update_interval_s,
            require_verified=config.require_verified,
            unverified_policy=config.unverified.action,
        )

    def _emitted(self, events: list[AlertEvent]) -> list[AlertEvent]:
        return [event for event in events if self.emit(event)]

    def submit(self, candidate: Candidate, *, opens: bool = True) -> AlertEvent | None:
        """Decide one candidate as the core does and emit what it causes; the event once stored."""
        event = self.episodes.accept(candidate, opens=opens)
        return None if event is None or not self.emit(event) else event

    def on_track_event(self, event: TrackEvent, media_time: float | None = None) -> list[AlertEvent]:
        """A removed track's episodes close (when it was last seen, on the wall clock here)."""
        if event.kind is not TrackEventKind.REMOVED:
            return []
        now = event.last_seen if media_time is None else media_time
        return self._emitted(self.episodes.track_ended(event.camera_id, event.track_id, now, event.last_seen))

    def tick_episodes(self, now: float | None = None) -> list[AlertEvent]:
        """Close quiet episodes at ``now`` (default: this manager's clock), then the housekeeping tick."""
        events = self._emitted(self.episodes.tick(self.clock() if now is None else now))
        self.tick()
        return events

    def close(self, drain_timeout_s: float | None = None, stop_timeout_s: float | None = None) -> None:
        """Close the open episodes (as the core does at shutdown), then the manager."""
        if self.running:
            self._emitted(self.episodes.close_all(CloseReason.SHUTDOWN, wall_time=self.clock()))
        super().close(drain_timeout_s, stop_timeout_s)
