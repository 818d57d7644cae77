"""A camera password never shows: not in the log, the status lines, /health, /metrics or errors."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from agent.redact import RedactingFilter, redact_text
from tests.reliability.agent_process import AgentProcess

PASSWORD = "hunter2"


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


def test_a_camera_password_reaches_no_output(tmp_path: Path) -> None:
    uri = f"rtsp://admin:{PASSWORD}@127.0.0.1:{_closed_port()}/stream"
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "cameras:\n"
        f"  - {{id: door, uri: '{uri}', connect_timeout_s: 1, reconnect: {{initial_s: 0.5, max_s: 1}}}}\n"
        "api: {enabled: true, port: 0}\n"
        "output: {status_interval_s: 0.5}\n"
    )
    agent = AgentProcess(config, tmp_path)
    try:
        agent.wait_for("API listening on")
        url = re.search(r"API listening on (http://\S+)", agent.output()).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 60
        health: dict = {}
        while time.monotonic() < deadline:
            status, body = _get(url + "/health")
            health = json.loads(body)
            if health["cameras"]["door"]["error"]:
                break
            time.sleep(0.5)
        assert status == 503 and health["status"] == "degraded"
        error = health["cameras"]["door"]["error"]
        assert error and PASSWORD not in json.dumps(health)
        _, metrics = _get(url + "/metrics")
        assert PASSWORD not in metrics
        agent.wait_for("reconnect")
    finally:
        agent.terminate()
    output = agent.output()
    assert "admin:***@127.0.0.1" in output  # the URI is logged, without its password
    assert PASSWORD not in output
