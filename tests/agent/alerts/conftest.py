"""Fixtures of the alerts tests: a mosquitto broker, an MQTT subscriber, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import MOSQUITTO, Mosquitto, MqttSubscriber, WebhookReceiver, free_port


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto broker on a free port of 127.0.0.1 (``stop()``/``start()`` to restart it)."""
    if not MOSQUITTO.is_file():
        pytest.skip(f"the mosquitto broker is not installed ({MOSQUITTO}); apt-get install mosquitto")
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mqtt_subscriber(mosquitto: Mosquitto) -> Iterator[MqttSubscriber]:
    """A QoS 1 subscriber to ``watchword/#`` with a persistent session."""
    subscriber = MqttSubscriber(mosquitto.port)
    yield subscriber
    subscriber.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP receiver that records POSTs and checks their HMAC signature."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
