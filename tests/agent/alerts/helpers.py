"""Test helpers for the alerts tests: hand-made candidates, polling with a deadline, receivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts.config import AlertsConfig
from agent.types import Candidate

MOSQUITTO = Path("/usr/sbin/mosquitto")
WEBHOOK_SECRET = "test-secret"


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail the test after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def gradient_frame(width: int = 320, height: int = 240) -> np.ndarray:
    """A deterministic BGR frame with gradients (so JPEG encoding has something to encode)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1)
    return image.astype(np.uint8)


def make_candidate(
    *,
    camera: str = "cam1",
    track: int = 1,
    query: int = 7,
    t: float = 1_000.0,
    score: float = 0.8,
    box: tuple[float, float, float, float] = (40.0, 30.0, 120.0, 190.0),
    frame: np.ndarray | None = None,
    verified: bool | None = None,
    fused_score: float | None = None,
    rationale: dict[str, Any] | None = None,
    frame_index: int = 0,
    verification: str | None = None,
    verification_reason: str | None = None,
    severity: str = "critical",
) -> Candidate:
    """A candidate of ``track`` on ``camera`` for query ``query`` at UNIX time ``t``."""
    return Candidate(
        camera_id=camera,
        track_id=track,
        query_id=query,
        query_text=f"query {query}",
        score=score,
        cosine=0.31,
        wall_time=t,
        frame_index=frame_index,
        box=box,
        frame=gradient_frame() if frame is None else frame,
        severity=severity,
        score_history=[(t - 1.0, score - 0.1), (t, score)],
        model_versions={"clip": "clip-test@1", "detector": "ssd@1"},
        fused_score=fused_score,
        verified=verified,
        rationale=rationale,
        verification=verification,
        verification_reason=verification_reason,
    )


FAST_RETRY = {"initial_s": 0.05, "max_s": 0.3, "factor": 2.0}


def alerts_settings(
    tmp_path: Path,
    *,
    webhook_url: str | None = None,
    mqtt_port: int | None = None,
    jsonl: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """The data of an alerts config in ``tmp_path`` with fast retries and the given sinks."""
    sinks: list[dict[str, Any]] = []
    if jsonl:
        sinks.append({"type": "jsonl", "path": str(tmp_path / "alerts.jsonl"), "retry": FAST_RETRY})
    if webhook_url is not None:
        sinks.append(
            {
                "type": "webhook",
                "url": webhook_url,
                "secret": WEBHOOK_SECRET,
                "timeout_s": 2.0,
                "retry": FAST_RETRY,
            }
        )
    if mqtt_port is not None:
        sinks.append(
            {
                "type": "mqtt",
                "host": "127.0.0.1",
                "port": mqtt_port,
                "timeout_s": 0.5,
                "reconnect_min_s": 1,
                "reconnect_max_s": 1,
                "retry": FAST_RETRY,
            }
        )
    data: dict[str, Any] = {
        "database": str(tmp_path / "alerts.db"),
        "evidence_dir": str(tmp_path / "evidence"),
        "cooldown_s": 0.0,
        "drain_timeout_s": 3.0,
        "sinks": sinks,
    }
    data.update(settings)
    return data


def alerts_config(tmp_path: Path, **kwargs: Any) -> AlertsConfig:
    """An alerts config in ``tmp_path`` (see :func:`alerts_settings`)."""
    return AlertsConfig.model_validate(alerts_settings(tmp_path, **kwargs))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:``port`` that can be stopped and started again on that port.

    Persistence is on (in ``workdir``) so that a persistent subscriber's session and queued QoS 1
    messages survive a broker restart, as with a real deployment.
    """

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "user root\n"
            "log_dest stderr\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        log_file = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.conf)], stdout=log_file, stderr=log_file
        )
        log_file.close()
        process = self.process
        wait_until(lambda: port_open(self.port) or process.poll() is not None, timeout_s, "mosquitto")
        if process.poll() is not None:
            log = (self.workdir / "mosquitto.log").read_text(errors="replace")
            raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@dataclass
class Message:
    topic: str
    payload: dict[str, Any]


FENCE_TOPIC = "watchword-test/fence"


class MqttSubscriber:
    """A persistent-session QoS 1 subscriber that records every alert it receives.

    :meth:`fence` returns once every message the broker took before it has reached this subscriber,
    so a test can check that nothing more (a duplicate) arrives without sleeping.
    """

    def __init__(
        self, port: int, topic: str = "watchword/#", client_id: str = "alerts-test-subscriber"
    ) -> None:
        self.port = port
        self.topic = topic
        self.messages: list[Message] = []
        self._fences: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the test subscriber did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(self.topic, 1), (FENCE_TOPIC, 1)])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            if message.topic == FENCE_TOPIC:
                self._fences.add(message.payload.decode())
            else:
                self.messages.append(Message(message.topic, json.loads(message.payload)))

    def fence(self, timeout_s: float = 10.0) -> None:
        """Publish a marker (QoS 1, from a client of its own) and wait until it arrives here.

        The broker (one mosquitto) forwards what it took to a subscriber in the order it took it, so
        once the marker is here, so is every message published before this call: a duplicate sent
        before the outbox drained has arrived, and nothing else is on its way.
        """
        token = f"fence-{time.monotonic_ns()}"
        publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        publisher.connect("127.0.0.1", self.port, keepalive=10)
        publisher.loop_start()
        try:
            publisher.publish(FENCE_TOPIC, token, qos=1).wait_for_publish(timeout_s)
        finally:
            publisher.disconnect()
            publisher.loop_stop()

        def arrived() -> bool:
            with self._lock:
                return token in self._fences

        wait_until(arrived, timeout_s, "the MQTT fence marker")

    def event_ids(self) -> list[str]:
        with self._lock:
            return [m.payload["event_id"] for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]
    signature_ok: bool
    status: int


class WebhookReceiver:
    """An HTTP receiver on 127.0.0.1 that records every POST and checks its HMAC signature.

    ``fail_next`` answers that many requests with HTTP 500; ``delay_s`` slows every answer;
    ``refuse`` maps event ids to a status answered every time (400: a permanent refusal), and
    ``refuse_if`` picks such a status from the payload (None: answer as usual).
    The signature is checked as the README documents it: HMAC-SHA256 of ``<timestamp>.<body>``.
    """

    def __init__(self, secret: str = WEBHOOK_SECRET) -> None:
        self.secret = secret.encode()
        self.requests: list[Received] = []
        self.fail_next = 0
        self.delay_s = 0.0
        self.refuse: dict[str, int] = {}
        self.refuse_if: Callable[[dict[str, Any]], int | None] | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = self.headers.get("X-Watchword-Timestamp", "").encode() + b"." + body
                expected = "sha256=" + hmac.new(receiver.secret, signed, hashlib.sha256).hexdigest()
                payload = json.loads(body)
                with receiver._lock:
                    status = 500 if receiver.fail_next > 0 else 200
                    receiver.fail_next = max(0, receiver.fail_next - 1)
                    status = receiver.refuse.get(payload.get("event_id"), status)
                    if receiver.refuse_if is not None:
                        status = receiver.refuse_if(payload) or status
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                received = Received(
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    payload=json.loads(body),
                    signature_ok=hmac.compare_digest(expected, self.headers.get("X-Watchword-Signature", "")),
                    status=status,
                )
                with receiver._lock:
                    receiver.requests.append(received)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def accepted(self) -> list[Received]:
        """Requests answered 2xx (what the receiver acknowledged)."""
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def event_ids(self) -> list[str]:
        return [r.payload["event_id"] for r in self.accepted()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
