"""Hundreds of half-sent requests against a real agent with a small file limit: the API still
answers, alerts keep their evidence, and the log stays small.

The agent runs as ``watchword run`` in a child process whose ``RLIMIT_NOFILE`` is lowered (soft and
hard) to :data:`FILE_LIMIT`; the slow clients are raw sockets to 127.0.0.1 that each send a request
line and then one header line every :data:`DRIP_S` seconds, never the blank line that ends the head.
The attack is bounded in sockets (:data:`SLOW_CLIENTS` at a time, :data:`MAX_OPENS` in all) and in
time (:data:`ATTACK_S`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.reliability.agent_process import AgentProcess

log = logging.getLogger(__name__)

TOKEN = "slow-clients-token-0123456789"
FILE_LIMIT = 384
SLOW_CLIENTS = 500
MAX_OPENS = 5000
ATTACK_S = 20.0
DRIP_S = 3.0
PROBE_TIMEOUT_S = 5.0
LOG_BUDGET_BYTES = 64 * 1024


class SlowClients:
    """Up to ``count`` sockets to ``port`` that never finish their request head (Slowloris)."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self.opened = 0
        self.closed_by_server = 0
        self.refused = 0

    def _open(self) -> None:
        sock = socket.socket()
        sock.settimeout(0.2)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        except OSError:
            sock.close()
            self.refused += 1
            return
        self.opened += 1
        self.sockets.append(sock)

    def fill(self, deadline: float) -> None:
        """Open sockets until ``count`` are open (or the opens or the time run out)."""
        while len(self.sockets) < self.count and self.opened < MAX_OPENS and time.monotonic() < deadline:
            self._open()

    def drip(self) -> None:
        """One more header line on every socket; forget those the server closed."""
        alive = []
        for sock in self.sockets:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                alive.append(sock)
            except OSError:
                self.closed_by_server += 1
                sock.close()
        self.sockets = alive

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def _livez_seconds(url: str) -> float | None:
    """Seconds ``GET /livez`` took, or None when it failed or timed out."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/livez", timeout=PROBE_TIMEOUT_S) as response:
            response.read()
            return time.monotonic() - started if response.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


def _metrics(url: str) -> str:
    request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
        return str(response.read().decode())


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _alerts(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _raise_own_file_limit(request: pytest.FixtureRequest) -> None:
    """Room in this process for the slow clients' sockets (put back after the test)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = SLOW_CLIENTS + 128
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test process needs {needed} open files (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))
    request.addfinalizer(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))


@pytest.mark.slow
def test_slow_clients_under_a_small_file_limit_cost_no_answers_evidence_or_log(
    tmp_path: Path, clip_fp32: Path, ssd_model_dir: Path, sample_video: Path, request: pytest.FixtureRequest
) -> None:
    _raise_own_file_limit(request)
    alerts_jsonl = tmp_path / "alerts.jsonl"
    evidence = tmp_path / "state" / "evidence"
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"cameras:\n  - {{id: sample, uri: '{sample_video}', loop: true, analysis_fps: 4}}\n"
        f"detector: {{type: ssd-mobilenet, batch_size: 2, model_dir: '{ssd_model_dir}'}}\n"
        "matching:\n"
        f"  embedder: {{model_dir: '{clip_fp32}', engine: {{type: onnxruntime, providers: [cpu]}}}}\n"
        "  window_s: 1\n  embed_interval_s: 0.5\n"
        "queries:\n  - {text: a person, threshold: 0.01, cooldown_s: 1, severity: critical}\n"
        "alerts:\n  cooldown_s: 1\n  episode_quiet_s: 2\n"
        f"  sinks:\n    - {{type: jsonl, path: '{alerts_jsonl}'}}\n"
        f"api: {{enabled: true, port: 0, token: {TOKEN}}}\n"
    )
    agent = AgentProcess(config, tmp_path, file_limit=FILE_LIMIT)
    clients: SlowClients | None = None
    try:
        agent.wait_for("API listening on")
        url = re.search(r"API listening on (http://\S+)", agent.output()).group(1)  # type: ignore[union-attr]
        deadline = time.monotonic() + 120
        while not _alerts(alerts_jsonl) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _alerts(alerts_jsonl), f"no alert before the attack:\n{agent.output()[-3000:]}"
        open_before = _open_files(agent.pid)
        alerts_before = len(_alerts(alerts_jsonl))
        log_before = agent.log_path.stat().st_size

        clients = SlowClients(int(url.rsplit(":", 1)[1]), SLOW_CLIENTS)
        probes: list[float | None] = []
        open_most = open_before
        started = time.monotonic()
        next_drip = started + DRIP_S
        while time.monotonic() - started < ATTACK_S:
            clients.fill(min(started + ATTACK_S, time.monotonic() + 1.0))
            probes.append(_livez_seconds(url))
            open_most = max(open_most, _open_files(agent.pid))
            if time.monotonic() >= next_drip:
                clients.drip()
                next_drip += DRIP_S
            time.sleep(0.2)  # paces the probes (a few a second); the attack goes on meanwhile
        alerts_during = _alerts(alerts_jsonl)[alerts_before:]
        log_growth = agent.log_path.stat().st_size - log_before
        after = _livez_seconds(url)
        metrics = _metrics(url)
    finally:
        if clients is not None:
            clients.close()
        agent.terminate()
    output = agent.output()
    answered = sorted(p for p in probes if p is not None)
    log.warning(
        "slow clients: %d opened, %d closed by the agent, %d not connected; agent files %d, at most %d "
        "(limit %d); /livez answered %d of %d, slowest %.2f s; %d alert events; log +%d bytes",
        clients.opened,
        clients.closed_by_server,
        clients.refused,
        open_before,
        open_most,
        FILE_LIMIT,
        len(answered),
        len(probes),
        answered[-1] if answered else float("nan"),
        len(alerts_during),
        log_growth,
    )
    assert len(answered) == len(probes) and after is not None, (
        f"/livez failed {len(probes) - len(answered)} times"
    )
    assert clients.closed_by_server > 0, "the agent should close connections that never finish their head"
    assert open_most < FILE_LIMIT - 64, "the API should leave a reserve of file descriptors"
    closed = re.search(r'watchword_api_connections_closed_total\{reason="evicted"\} (\d+)', metrics)
    assert closed and int(closed.group(1)) > 0, metrics
    opened = [a for a in alerts_during if a.get("event") == "opened"]
    assert opened, "alerts should keep being raised during the attack"
    for alert in opened:
        files = alert.get("evidence") or {}
        assert files.get("crop") and (evidence / files["crop"]).is_file(), alert
    assert "no evidence images" not in output and "Too many open files" not in output
    assert log_growth < LOG_BUDGET_BYTES, f"the log grew {log_growth} bytes during the attack"
