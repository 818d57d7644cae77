"""The re-ranker's LMM over NATS: ``watchword lmm serve`` workers answering a site's requests.

The workers' backend is the real OpenAI-compatible backend against a local chat-completions test
double (tests/agent/rerank/chat_server.py): no LMM runs on this machine's CPU in a unit test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.config import parse_config
from agent.fleet.config import FleetBackendConfig
from agent.fleet.link import NatsLink
from agent.fleet.lmm import FleetLmmBackend, LmmWorker, decode_request, encode_request
from agent.rerank.backends.base import LmmError, LmmRequest, Turn, build_backend
from agent.rerank.config import OpenAIBackendConfig
from tests.agent.alerts.helpers import wait_until
from tests.agent.fleet.test_fleet_cli import _fleet_yaml
from tests.agent.rerank.chat_server import FakeChatServer
from tests.fixtures.nats_fleet import AGENT_PASSWORD, AGENT_USER, FleetNet

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    server = FakeChatServer()
    yield server
    server.close()


def _site_backend(net: FleetNet, site: str, timeout_s: float = 10.0) -> FleetLmmBackend:
    config = FleetBackendConfig.model_validate(
        {
            "type": "fleet",
            "url": net.leaves[site].url,
            "site": site,
            "user": AGENT_USER,
            "password": AGENT_PASSWORD,
            "timeout_s": timeout_s,
        }
    )
    backend = build_backend(config)
    assert isinstance(backend, FleetLmmBackend)
    backend.link.start()
    assert backend.link.wait_connected(10)
    return backend


def _worker(net: FleetNet, server: FakeChatServer) -> LmmWorker:
    backend = build_backend(OpenAIBackendConfig(type="openai", base_url=server.base_url, model="m"))
    worker = LmmWorker(NatsLink(net.hub_connection(), "worker"), backend, net.sites)
    worker.start()
    wait_until(lambda: worker.ready, 10, "the worker's subscriptions")
    return worker


def test_the_wire_format_keeps_the_request() -> None:
    image = np.full((32, 24, 3), 120, np.uint8)
    request = LmmRequest("fill the blanks", (image,), system="sys", history=(Turn("u", "a"),))
    decoded = decode_request(encode_request(request))
    assert (decoded.prompt, decoded.system, decoded.history) == ("fill the blanks", "sys", (Turn("u", "a"),))
    assert decoded.images[0].shape == image.shape


def test_workers_share_a_site_s_requests_under_its_budget(
    fleet_net: FleetNet, chat_server: FakeChatServer
) -> None:
    workers = [_worker(fleet_net, chat_server) for _ in range(2)]
    backend = _site_backend(fleet_net, "site-a")
    gated: list[int] = []
    backend.request_gate = gated.append
    try:
        image = np.full((40, 30, 3), 90, np.uint8)
        answers = [backend.generate([LmmRequest(f"question {i}", (image,))])[0] for i in range(20)]
        assert all('"verdict"' in answer.text for answer in answers)
        assert gated == [1] * 20  # the site's call budget saw every request before it left
        assert sum(w.answered for w in workers) == 20
        assert all(w.answered > 0 for w in workers), [w.answered for w in workers]
        assert len(chat_server.bodies) == 20
    finally:
        backend.close()
        for worker in workers:
            worker.close()


def test_a_worker_killed_mid_request_costs_a_timeout(
    fleet_net: FleetNet, chat_server: FakeChatServer, tmp_path: Path
) -> None:
    chat_server.script = ["slow"]
    chat_server.slow_s = 30.0
    rerank = tmp_path / "rerank.yaml"
    rerank.write_text(
        f"rerank: {{backend: {{type: openai, base_url: '{chat_server.base_url}', model: m}}}}\n"
    )
    fleet = _fleet_yaml(fleet_net, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "agent.cli",
        "lmm",
        "serve",
        "--fleet",
        str(fleet),
        "--rerank",
        str(rerank),
    ]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    backend = _site_backend(fleet_net, "site-b", timeout_s=3.0)
    try:
        assert worker.stdout is not None and "lmm worker" in worker.stdout.readline()
        started = time.monotonic()
        killer = _kill_when(lambda: len(chat_server.bodies) == 1, worker)
        with pytest.raises(LmmError, match=r"no LMM worker answered within 3\.0 s"):
            backend.generate([LmmRequest("is this a fall?")])
        killer.join()
        assert worker.returncode == -signal.SIGKILL
        assert 2.5 < time.monotonic() - started < 8
    finally:
        if worker.poll() is None:
            worker.kill()
        backend.close()


def _kill_when(condition: Callable[[], bool], process: subprocess.Popen[str]) -> threading.Thread:
    def kill() -> None:
        wait_until(condition, 10, "the worker's request at the model")
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def test_the_fleet_backend_takes_the_fleet_section_s_connection() -> None:
    config = parse_config(
        "site: store-12\ncameras: [{id: a, uri: 'test://'}]\n"
        "fleet: {url: 'nats://127.0.0.1:4333', user: agent, password: pw}\n"
        "rerank: {enabled: true, backend: {type: fleet, timeout_s: 20}}\n"
    )
    backend = config.rerank.backend
    assert isinstance(backend, FleetBackendConfig)
    assert (backend.url, backend.user, backend.site, backend.timeout_s) == (
        "nats://127.0.0.1:4333",
        "agent",
        "store-12",
        20,
    )
