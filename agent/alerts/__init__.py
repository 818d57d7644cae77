"""Alerts: episodes with cooldown, evidence bundles, a durable SQLite outbox, sinks (JSONL, webhook, MQTT).

Only the config is imported eagerly, so that ``agent.config`` can nest :class:`AlertsConfig`
without loading the manager, the evidence writer (OpenCV) and the sinks; the other names load on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agent.alerts.config import AlertsConfig, JsonlSinkConfig, MqttSinkConfig, SinkConfig, WebhookSinkConfig

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.alerts' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
