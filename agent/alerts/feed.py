"""Track events and the passing of media time, fed to the alerts after each analysed batch."""

from __future__ import annotations

from typing import Protocol

from agent.types import FrameResult, TrackEvent


class EpisodeClock(Protocol):
    """What the feed drives: the alert manager (or, in a replay, its episode tracker)."""

    def on_track_event(self, event: TrackEvent, media_time: float | None = None) -> object: ...

    def tick(self, media_time: float | None = None, camera_id: str | None = None) -> object: ...


class AlertFeed:
    """Analyser that closes the episodes of removed tracks and, about once a media second per camera,
    closes that camera's quiet episodes, all on the camera's media clock."""

    def __init__(self, alerts: EpisodeClock, tick_interval_s: float = 1.0) -> None:
        self.alerts = alerts
        self.tick_interval_s = tick_interval_s
        self._last_tick: dict[str, float] = {}

    def process(self, results: list[FrameResult]) -> None:
        for result in results:
            self.frame(result)

    def frame(self, result: FrameResult) -> None:
        """One analysed frame: its track events, then a tick when one is due for its camera."""
        frame = result.frame
        now = frame.media_time
        for event in result.events:
            self.alerts.on_track_event(event, now)
        last = self._last_tick.get(frame.camera_id)
        if last is None or now < last or now - last >= self.tick_interval_s:
            self._last_tick[frame.camera_id] = now
            self.alerts.tick(now, frame.camera_id)
