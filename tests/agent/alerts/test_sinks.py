"""Each sink against a real receiver: a file, an HTTP server, a mosquitto broker."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.alerts.sinks.base import SinkError, encode_payload
from agent.alerts.sinks.jsonl import JsonlSink
from agent.alerts.sinks.mqtt import MqttSink
from agent.alerts.sinks.webhook import WebhookSink, signature, verify_signature

from .helpers import WEBHOOK_SECRET, Mosquitto, MqttSubscriber, WebhookReceiver, free_port, wait_until


def _payload(n: int, camera: str = "cam1") -> dict[str, Any]:
    return {
        "event_id": f"a{n}/0",
        "alert_id": f"a{n}",
        "seq": 0,
        "site": "lab",
        "camera": camera,
        "score": 0.5,
    }


def test_jsonl_appends_fsynced_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "out" / "alerts.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier":true}\n')
    sink = JsonlSink("jsonl", path)
    sink.start()
    sink.send(_payload(1))
    sink.send(_payload(2))
    sink.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line).get("event_id") for line in lines] == [None, "a1/0", "a2/0"]
    assert len(synced) == 2


def test_jsonl_unwritable_path_raises_sink_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    sink = JsonlSink("jsonl", tmp_path / "file" / "alerts.jsonl")
    with pytest.raises(SinkError, match="cannot open"):
        sink.send(_payload(1))


def test_webhook_posts_signed_json(webhook_receiver: WebhookReceiver) -> None:
    sink = WebhookSink(
        "hook", webhook_receiver.url, secret=WEBHOOK_SECRET, headers={"Authorization": "Bearer t"}
    )
    sink.send(_payload(1))
    (request,) = webhook_receiver.requests
    assert request.signature_ok
    assert request.body == encode_payload(_payload(1))
    assert request.headers["x-watchword-alert-id"] == "a1"
    assert request.headers["x-watchword-event-id"] == "a1/0"
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers["content-type"] == "application/json"
    stamp = request.headers["x-watchword-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    header = request.headers["x-watchword-signature"]
    assert header == signature(WEBHOOK_SECRET, request.body, stamp)
    assert verify_signature(WEBHOOK_SECRET, request.body, header, stamp)
    assert not verify_signature("other", request.body, header, stamp)
    # The timestamp is signed: a replay with a fresh timestamp or an old one is refused.
    assert not verify_signature(WEBHOOK_SECRET, request.body, header, str(int(stamp) + 1))
    assert not verify_signature(WEBHOOK_SECRET, request.body, header, stamp, now=int(stamp) + 301)


def test_webhook_non_2xx_timeout_and_refused_are_not_acks(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_next = 1
    with pytest.raises(SinkError, match="HTTP 500"):
        WebhookSink("hook", webhook_receiver.url).send(_payload(1))
    webhook_receiver.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(SinkError, match="timed out"):
        WebhookSink("hook", webhook_receiver.url, timeout_s=0.2).send(_payload(2))
    assert time.monotonic() - started < 0.9
    with pytest.raises(SinkError, match="refused"):
        WebhookSink("hook", f"http://127.0.0.1:{free_port()}/").send(_payload(3))


def test_webhook_user_and_password_in_the_url_are_sent_as_basic_auth(
    webhook_receiver: WebhookReceiver,
) -> None:
    host = webhook_receiver.url.split("://", 1)[1]
    sink = WebhookSink("hook", f"http://alert%40site:p%3Ass@{host}", secret=WEBHOOK_SECRET)
    sink.send(_payload(1))
    (request,) = webhook_receiver.requests
    assert request.signature_ok
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"alert@site:p:ss").decode()
    with pytest.raises(ValueError, match="user:password@ and an Authorization header"):
        WebhookSink("hook", f"http://u:p@{host}", headers={"Authorization": "Bearer t"})


def test_webhook_errors_show_the_host_but_not_the_url_path(webhook_receiver: WebhookReceiver) -> None:
    secret_url = webhook_receiver.url + "/services/T0/B0/SlackKey0123?token=SlackKey0123"
    webhook_receiver.fail_next = 1
    with pytest.raises(SinkError) as answered:
        WebhookSink("hook", secret_url).send(_payload(1))
    closed = f"http://u:p@127.0.0.1:{free_port()}/services/T0/B0/SlackKey0123"
    with pytest.raises(SinkError) as refused:
        WebhookSink("hook", closed).send(_payload(2))
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    assert str(answered.value) == f"http://127.0.0.1:{port}/*** answered HTTP 500 Internal Server Error"
    assert "refused" in str(refused.value)
    for error in (answered.value, refused.value):
        assert "SlackKey0123" not in str(error) and "services" not in str(error)


def test_webhook_redirect_is_not_an_ack() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(SinkError, match="302"):
            WebhookSink("hook", f"http://127.0.0.1:{server.server_address[1]}/").send(_payload(1))
    finally:
        server.shutdown()
        server.server_close()


def test_mqtt_publishes_with_qos1_to_the_camera_topic(
    mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber
) -> None:
    sink = MqttSink("mqtt", "127.0.0.1", mosquitto.port, timeout_s=5)
    sink.start()
    try:
        sink.send(_payload(1, camera="dock-1"))
        sink.send(_payload(2, camera="gate"))
    finally:
        sink.close()
    wait_until(lambda: len(mqtt_subscriber.messages) == 2, 5, "two messages")
    assert [(m.topic, m.payload["event_id"]) for m in mqtt_subscriber.messages] == [
        ("watchword/lab/alerts/dock-1", "a1/0"),
        ("watchword/lab/alerts/gate", "a2/0"),
    ]


def test_mqtt_without_broker_raises_sink_error_within_timeout() -> None:
    sink = MqttSink("mqtt", "127.0.0.1", free_port(), timeout_s=0.3)
    sink.start()
    started = time.monotonic()
    try:
        with pytest.raises(SinkError, match="not connected"):
            sink.send(_payload(1))
    finally:
        sink.close()
    assert time.monotonic() - started < 2.0
