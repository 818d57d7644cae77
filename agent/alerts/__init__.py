"""Alerts: episodes with cooldown, evidence bundles, a durable SQLite outbox, sinks (JSONL, webhook, MQTT)."""

from __future__ import annotations

from agent.alerts.config import AlertsConfig, JsonlSinkConfig, MqttSinkConfig, SinkConfig, WebhookSinkConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind, CloseReason, Episode, EpisodeTracker
from agent.alerts.manager import AlertManager, AlertStats

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
