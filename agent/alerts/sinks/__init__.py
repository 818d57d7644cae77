"""Alert sinks behind one interface (:class:`Sink`), built from their config by :func:`build_sink`."""

from __future__ import annotations

from agent.alerts.config import JsonlSinkConfig, MqttSinkConfig, SinkConfig, WebhookSinkConfig
from agent.alerts.sinks.base import Sink, SinkError, encode_payload

__all__ = ["Sink", "SinkError", "build_sink", "encode_payload"]


def build_sink(config: SinkConfig) -> Sink:
    """The sink a config describes; connects nothing (that happens in :meth:`Sink.start`)."""
    if isinstance(config, JsonlSinkConfig):
        from agent.alerts.sinks.jsonl import JsonlSink

        return JsonlSink(config.name, config.path, fsync=config.fsync)
    if isinstance(config, WebhookSinkConfig):
        from agent.alerts.sinks.webhook import WebhookSink

        secret = None if config.secret is None else config.secret.get_secret_value()
        return WebhookSink(
            config.name, config.url, secret=secret, timeout_s=config.timeout_s, headers=config.headers
        )
    if isinstance(config, MqttSinkConfig):
        # paho is imported only when an MQTT sink is configured.
        from agent.alerts.sinks.mqtt import MqttSink

        return MqttSink(
            config.name,
            config.host,
            config.port,
            username=config.username,
            password=None if config.password is None else config.password.get_secret_value(),
            tls=config.tls,
            ca_file=config.ca_file,
            client_id=config.client_id,
            qos=config.qos,
            topic_prefix=config.topic_prefix,
            keepalive_s=config.keepalive_s,
            timeout_s=config.timeout_s,
            reconnect_min_s=config.reconnect_min_s,
            reconnect_max_s=config.reconnect_max_s,
        )
    raise TypeError(f"unknown sink config {type(config).__name__}")
