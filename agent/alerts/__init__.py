"""Alerts: episodes with cooldown, evidence bundles, a durable SQLite outbox, sinks (JSONL, webhook, MQTT).

Only the config is imported eagerly, so that ``agent.config`` can nest :class:`AlertsConfig`
without loading the manager, the evidence writer (OpenCV) and the sinks; the other names load on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.alerts.config import AlertsConfig, JsonlSinkConfig, MqttSinkConfig, SinkConfig, WebhookSinkConfig
from agent.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from agent.alerts.episodes import AlertEvent, AlertEventKind, CloseReason, Episode, EpisodeTracker
    from agent.alerts.manager import AlertManager, AlertStats

_LAZY = {
    "AlertEvent": "agent.alerts.episodes",
    "AlertEventKind": "agent.alerts.episodes",
    "CloseReason": "agent.alerts.episodes",
    "Episode": "agent.alerts.episodes",
    "EpisodeTracker": "agent.alerts.episodes",
    "AlertManager": "agent.alerts.manager",
    "AlertStats": "agent.alerts.manager",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AlertEvent",
    "AlertEventKind",
    "AlertManager",
    "AlertStats",
    "AlertsConfig",
    "CloseReason",
    "Episode",
    "EpisodeTracker",
    "JsonlSinkConfig",
    "MqttSinkConfig",
    "SinkConfig",
    "WebhookSinkConfig",
]
