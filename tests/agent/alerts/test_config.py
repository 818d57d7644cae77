"""Alerts config: defaults, sink names, discriminated sinks, bad values rejected."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.alerts.config import (
    AlertsConfig,
    JsonlSinkConfig,
    MqttSinkConfig,
    RetryConfig,
    SinkConfig,
    WebhookSinkConfig,
)


def test_defaults_and_sink_names_default_to_type() -> None:
    config = AlertsConfig.model_validate(
        {
            "sinks": [
                {"type": "jsonl", "path": "alerts.jsonl"},
                {"type": "webhook", "url": "https://example.test/hook", "secret": "hunter2-secret"},
                {"type": "mqtt", "host": "broker.local"},
                {"type": "mqtt", "name": "backup-broker", "host": "10.0.0.2", "port": 8883, "tls": True},
            ]
        }
    )
    assert config.cooldown_s == 60.0 and config.episode_quiet_s == 30.0
    assert config.database == Path("data/alerts.db")
    assert [s.name for s in config.sinks] == ["jsonl", "webhook", "mqtt", "backup-broker"]
    jsonl, webhook, mqtt, backup = config.sinks
    assert isinstance(jsonl, JsonlSinkConfig) and jsonl.fsync
    assert isinstance(webhook, WebhookSinkConfig) and webhook.secret is not None
    assert "hunter2" not in repr(webhook)  # the secret is not printed
    assert isinstance(mqtt, MqttSinkConfig) and mqtt.qos == 1 and mqtt.topic_prefix == "watchword"
    assert isinstance(backup, MqttSinkConfig) and backup.port == 8883


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sinks": [{"type": "jsonl", "path": "a"}, {"type": "jsonl", "path": "b"}]}, "used twice"),
        ({"sinks": [{"type": "email", "to": "x"}]}, "does not match any of the expected tags"),
        ({"sinks": [{"type": "webhook", "url": "ftp://x"}]}, "should match pattern"),
        (
            {"sinks": [{"type": "webhook", "url": "http://x", "headers": {"X-Watchword-Signature": "x"}}]},
            "cannot",
        ),
        (
            {
                "sinks": [
                    {"type": "webhook", "url": "https://u:p@x/hook", "headers": {"authorization": "Bearer t"}}
                ]
            },
            "url has user:password@",
        ),
        ({"sinks": [{"type": "webhook", "url": "http://x/a\x01b"}]}, "control characters"),
        ({"sinks": [{"type": "mqtt", "host": "h", "qos": 0}]}, "qos"),
        ({"sinks": [{"type": "mqtt", "host": "h", "topic_prefix": "a/b"}]}, "should match pattern"),
        ({"sinks": [{"type": "mqtt", "host": "h", "password": "p"}]}, "password needs a username"),
        ({"sinks": [{"type": "jsonl", "path": "a", "fsnyc": False}]}, "Extra inputs are not permitted"),
        ({"cooldown": 5}, "Extra inputs are not permitted"),
        ({"retention_days": 0}, "greater than 0"),
    ],
)
def test_bad_config_is_rejected(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertsConfig.model_validate(data)


def test_retry_backoff_is_capped_exponential() -> None:
    retry = RetryConfig(initial_s=0.5, max_s=3.0, factor=2.0)
    assert [retry.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValidationError, match="max_s must be at least initial_s"):
        RetryConfig(initial_s=5.0, max_s=1.0)


def test_sink_config_round_trips_through_json() -> None:
    adapter: TypeAdapter[SinkConfig] = TypeAdapter(SinkConfig)
    sink = adapter.validate_python({"type": "mqtt", "host": "h", "name": "m1"})
    assert adapter.validate_json(adapter.dump_json(sink)) == sink
