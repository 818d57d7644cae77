"""MQTT sink (paho-mqtt 2.x): publish each alert event with QoS 1 (or 2); the PUBACK is the ack.

Topic: ``<topic_prefix>/<site>/alerts/<camera>``. The paho network thread (``loop_start``) keeps the
connection and reconnects with its own backoff; ``send`` waits up to ``timeout_s`` for a connection
and then for the broker's acknowledgement. Delivery is at least once: an event published just as the
connection drops may arrive twice, which receivers handle by ``event_id``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts.sinks.base import Sink, SinkError, encode_payload

log = logging.getLogger(__name__)


def alert_topic(prefix: str, site: str, camera: str) -> str:
    """The topic of a camera's alerts: ``<prefix>/<site>/alerts/<camera>``."""
    return f"{prefix}/{site}/alerts/{camera}"


class MqttSink(Sink):
    """Publishes alert events to an MQTT broker.

    Args:
        name: the sink's outbox name.
        host, port: the broker.
        username, password: credentials, or None.
        tls: connect with TLS (``ca_file`` or the system's CA bundle).
        client_id: MQTT client id; empty lets the client choose one.
        qos: 1 or 2.
        topic_prefix: first topic level.
        keepalive_s: MQTT keepalive, seconds.
        timeout_s: how long ``send`` waits for a connection and for the acknowledgement, seconds.
        reconnect_min_s, reconnect_max_s: paho's reconnect backoff, whole seconds.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: Path | None = None,
        client_id: str = "",
        qos: int = 1,
        topic_prefix: str = "watchword",
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 30,
    ) -> None:
        super().__init__(name)
        if qos not in (1, 2):
            raise ValueError(f"qos must be 1 or 2 (QoS 0 has no acknowledgement), got {qos}")
        self.host, self.port = host, port
        self.username, self._password = username, password
        self.tls, self.ca_file = tls, ca_file
        self.client_id = client_id
        self.qos = qos
        self.topic_prefix = topic_prefix
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._closing = False
        self._last_problem = "no connection yet"

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the current connection."""
        return self._connected.is_set()

    def start(self) -> None:
        if self._client is not None:
            return
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)
        if self.username is not None:
            client.username_pw_set(self.username, self._password)
        if self.tls:
            client.tls_set(ca_certs=None if self.ca_file is None else str(self.ca_file))
        client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        client.loop_start()
        self._client = client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._last_problem = f"the broker refused the connection: {reason}"
            log.warning(
                "mqtt %s: broker %s:%d refused the connection: %s", self.name, self.host, self.port, reason
            )
            return
        log.info("mqtt %s: connected to %s:%d", self.name, self.host, self.port)
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        self._last_problem = f"disconnected: {reason}"
        if not self._closing:
            log.warning("mqtt %s: disconnected from %s:%d: %s", self.name, self.host, self.port, reason)

    def send(self, payload: dict[str, Any]) -> None:
        if self._client is None:
            self.start()
        client = self._client
        assert client is not None
        if not self._connected.wait(self.timeout_s):
            raise SinkError(f"not connected to {self.host}:{self.port} ({self._last_problem})")
        topic = alert_topic(self.topic_prefix, str(payload["site"]), str(payload["camera"]))
        info = client.publish(topic, encode_payload(payload), qos=self.qos, retain=False)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise SinkError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise SinkError(f"no acknowledgement from {self.host}:{self.port} within {self.timeout_s} s")

    def close(self) -> None:
        self._closing = True
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._connected.clear()
