"""A camera password (in the user info or the query string) and a webhook URL never show: not in the
log, the status lines, /health, /metrics, /cameras, camera tests or errors."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent.alerts.outbox import Outbox
from agent.redact import RedactingFilter, has_credentials, redact_text, shown_endpoint
from agent.sources.uri import redact_uri
from tests.reliability.agent_process import AgentProcess

PASSWORD = "hunter2"
WEBHOOK_KEY = "XoXbSlackKey0123"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": error.read().decode()}


def test_redact_text_hides_every_uri_password() -> None:
    assert (
        redact_text("opened rtsp://admin:hunter2@10.0.0.5:554/s") == "opened rtsp://admin:***@10.0.0.5:554/s"
    )
    assert (
        redact_text("(rtsp://u:p@ss@cam/x?a=1) and http://x:y@h/")
        == "(rtsp://u:***@cam/x?a=1) and http://x:***@h/"
    )
    assert redact_text("rtsp://cam/x rtsp://admin@cam") == "rtsp://cam/x rtsp://admin@cam"


def test_log_records_are_redacted_whoever_logs_them() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "camera %s: %s", ("c", "rtsp://a:hunter2@h/"), None
    )
    RedactingFilter().filter(record)
    assert record.getMessage() == "camera c: rtsp://a:***@h/"


def test_query_string_credentials_are_redacted() -> None:
    uri = "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=hunter2&subtype=0"
    assert redact_text(f"opened {uri}.") == (
        "opened rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=***&subtype=0."
    )
    assert (
        redact_uri("http://cam/snapshot.cgi?usr=admin&pwd=hunter2")
        == "http://cam/snapshot.cgi?usr=admin&pwd=***"
    )
    assert (
        redact_text("http://h/x?api_key=hunter2;AuthToken=hunter2#sig=x")
        == "http://h/x?api_key=***;AuthToken=***#sig=x"
    )
    assert redact_text("rtsp://cam/live?channel=1&subtype=0") == "rtsp://cam/live?channel=1&subtype=0"
    assert has_credentials(uri) and has_credentials("rtsp://a:b@h/") and not has_credentials("rtsp://h/x?a=1")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "camera %s", (uri,), None)
    RedactingFilter().filter(record)
    assert PASSWORD not in record.getMessage()


def test_a_webhook_url_is_shown_by_its_host_only() -> None:
    assert shown_endpoint("https://hooks.slack.com/services/T0/B0/XYZ") == "https://hooks.slack.com/***"
    assert shown_endpoint("http://u:p@[::1]:8080/hook?token=x") == "http://[::1]:8080/***"
    assert shown_endpoint("https://receiver.example:8443") == "https://receiver.example:8443"


def _seed_undelivered_event(database: Path, sink: str) -> None:
    """An alert event a previous run left undelivered: the sink tries it as soon as it starts."""
    outbox = Outbox(database)
    payload = {
        "alert_id": "a1",
        "seq": 0,
        "event_id": "a1/0",
        "event": "opened",
        "camera": "door",
        "query_id": 1,
        "track_id": 1,
        "started_at": 1_000.0,
    }
    outbox.enqueue(payload, [sink], created_at=1_000.0)
    outbox.close()


def test_no_camera_password_or_webhook_url_reaches_any_output(tmp_path: Path) -> None:
    """Camera passwords (in the user info and in the query string) and the webhook's URL (its path
    is the key) appear in no answer of the API, no camera test result and no log line."""
    port = _closed_port()
    door = f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/stream"
    gate = f"rtsp://127.0.0.1:{port}/cam/realmonitor?channel=1&user=admin&password={PASSWORD}"
    hook = f"http://127.0.0.1:{port}/services/T0/B0/{WEBHOOK_KEY}?token={WEBHOOK_KEY}"
    state = tmp_path / "state"
    _seed_undelivered_event(state / "alerts.db", "slack")
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {state}\n"
        "cameras:\n"
        f"  - {{id: door, uri: '{door}', connect_timeout_s: 1, reconnect: {{initial_s: 0.5, max_s: 1}}}}\n"
        f"  - {{id: gate, uri: '{gate}', connect_timeout_s: 1, reconnect: {{initial_s: 0.5, max_s: 1}}}}\n"
        f"alerts:\n  sinks:\n    - {{type: webhook, name: slack, url: '{hook}', timeout_s: 1,"
        " retry: {initial_s: 0.2, max_s: 0.5}}\n"
        "api: {enabled: true, port: 0}\n"
        "output: {status_interval_s: 0.5}\n"
    )
    agent = AgentProcess(config, tmp_path)
    answers: list[str] = []
    try:
        agent.wait_for("API listening on")
        url = re.search(r"API listening on (http://\S+)", agent.output()).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline:
            status, body = _get(url + "/health")
            health = json.loads(body)
            cameras, sinks = health["cameras"], health["sinks"]
            if (
                cameras["door"]["error"]
                and cameras["gate"]["error"]
                and sinks.get("slack", {}).get("last_error")
            ):
                break
            time.sleep(0.5)
        assert status == 503 and health["status"] == "degraded"
        answers.append(json.dumps(health))
        assert health["sinks"]["slack"]["last_error"].startswith(f"POST http://127.0.0.1:{port}/***")
        answers.append(_get(url + "/metrics")[1])
        answers.append(_get(url + "/cameras")[1])
        answers.append(_get(url + "/dead-letters")[1])
        tested = _post(url + "/cameras/test", {"id": "gate"})
        assert tested["ok"] is False and tested["error"]
        answers.append(json.dumps(tested))
        agent.wait_for("reconnect")
    finally:
        agent.terminate()
    cameras = json.loads(answers[2])
    assert {c["id"]: c["has_credentials"] for c in cameras} == {"door": True, "gate": True}
    assert "password=***" in answers[2] and "admin:***@" in answers[2]
    for answer in answers:
        assert PASSWORD not in answer and WEBHOOK_KEY not in answer, answer
    output = agent.output()
    assert "admin:***@127.0.0.1" in output  # the URI is logged, without its password
    assert "password=***" in output and f"127.0.0.1:{port}/***" in output
    assert PASSWORD not in output and WEBHOOK_KEY not in output
