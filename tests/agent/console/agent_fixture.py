"""A real agent for the console tests: the sample video (looping) through SSD, ByteTrack and the tiny
CLIP export, alerts with evidence into a JSONL sink, and the API with its console on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import parse_config
from agent.service import Agent

TOKEN = "console-test-token-0123456789"


@dataclass
class RunningAgent:
    agent: Agent
    url: str
    root: Path
    video: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON or bytes, headers) of one request with the bearer token."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status, got = response.read(), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status, got = exc.read(), exc.code, dict(exc.headers)
        kind = got.get("content-type", "")
        return status, (json.loads(raw) if "json" in kind and raw else raw), got

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")[1]


def wait_for(condition: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for an agent restarted on the same one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_agent(
    root: Path, clip_dir: Path | None, video: Path, extra: str = "", port: int = 0
) -> Iterator[RunningAgent]:
    """Start the agent in a thread; stop it at the end (the stop is asserted to finish). Without
    ``clip_dir`` the agent runs without CLIP (no matcher, no search), like the demo without cues."""
    matching = (
        f"""matching:
  embedder:
    model_dir: "{clip_dir}"
    engine: {{type: onnxruntime, providers: [cpu]}}
  window_s: 1
  embed_interval_s: 0.5
search: {{flush_interval_s: 0.5}}"""
        if clip_dir is not None
        else ""
    )
    config = parse_config(
        f"""
site: console
state_dir: {root}/state
database: {root}/state/watchword.db
cameras:
  - {{id: sample, uri: "{video}", loop: true, analysis_fps: 4}}
detector: {{type: ssd-mobilenet, batch_size: 2}}
{matching}
alerts:
  database: {root}/state/alerts.db
  evidence_dir: {root}/state/evidence
  cooldown_s: 2
  episode_quiet_s: 3
  sinks:
    - {{type: jsonl, path: "{root}/alerts.jsonl"}}
api: {{enabled: true, port: {port}, token: {TOKEN}}}
{extra}
"""
    )
    agent = Agent(config, duration_s=600)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.api is not None, 60, "the API")
        assert agent.api is not None
        running = RunningAgent(agent, agent.api.url, root, video)

        def frames() -> int:
            try:  # the API object exists a moment before it listens
                return int(running.health()["cameras"].get("sample", {}).get("frames", 0))
            except OSError:
                return 0

        wait_for(lambda: frames() > 2, 60, "frames")
        yield running
    finally:
        agent.stop()
        runner.join(20)
        assert not runner.is_alive(), "the agent did not stop"
