"""A webhook that refuses one event (HTTP 400): it goes to the dead letters, later events flow,
an operator lists it (CLI and API) and sends it again once the receiver accepts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.queries import QueryRegistry
from tests.agent.alerts.deciding import DecidingManager
from tests.agent.alerts.helpers import WebhookReceiver, alerts_config, make_candidate, wait_until

REPO = Path(__file__).resolve().parents[2]
TOKEN = "dead-letter-token-0123456789"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def _api(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method="POST" if body is not None else "GET")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_refused_event_is_dead_lettered_and_does_not_block_later_ones(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    config = alerts_config(tmp_path, webhook_url=webhook_receiver.url, update_interval_s=0.0)
    manager = DecidingManager(config, "deadletters")
    manager.start()
    server = ApiServer(
        create_app(
            ApiContext(
                registry=QueryRegistry(tmp_path / "q.db"),
                token=TOKEN,
                health=manager.health,
                metrics=lambda: "",
                alerts=manager,
            )
        ),
        "127.0.0.1",
        0,
    )
    server.start()
    try:
        refused = {"open": True}
        webhook_receiver.refuse_if = lambda p: 400 if refused["open"] and p["query_id"] == 1 else None
        first = manager.submit(make_candidate(track=1, query=1, t=1_000.0))
        assert first is not None
        poisoned = f"{first.alert_id}/0"
        later = [manager.submit(make_candidate(track=t, query=t, t=1_000.0 + t)) for t in range(2, 12)]
        later_ids = {f"{e.alert_id}/{e.seq}" for e in later if e is not None}
        assert len(later_ids) == 10
        wait_until(lambda: later_ids <= set(webhook_receiver.event_ids()), 20, "the later events")
        wait_until(lambda: manager.health()["sinks"]["webhook"]["dead_letters"] == 1, 10, "the dead letter")
        posts_of_poisoned = sum(1 for r in webhook_receiver.requests if r.payload["event_id"] == poisoned)
        assert posts_of_poisoned == 3  # retry.permanent_attempts, then the dead letters

        health = manager.health()
        assert health["status"] == "degraded"
        assert health["sinks"]["webhook"]["dead_letters"] == 1
        listed = _api(server.url, "/dead-letters")["dead_letters"]
        assert [(d["sink"], d["event_id"]) for d in listed] == [("webhook", poisoned)]
        assert "HTTP 400" in listed[0]["last_error"]
        cli = _cli("alerts", "dead-letters", "--db", str(config.database), "--json")
        assert cli.returncode == 0, cli.stderr
        assert [d["event_id"] for d in json.loads(cli.stdout)] == [poisoned]

        # Fixed on the receiver's side: an operator sends it again by hand (CLI), and it arrives once.
        refused["open"] = False
        cli = _cli("alerts", "retry", "--db", str(config.database), "--sink", "webhook")
        assert cli.returncode == 0 and "queued 1" in cli.stdout, cli.stderr
        wait_until(lambda: poisoned in webhook_receiver.event_ids(), 20, "the retried event")
        assert _api(server.url, "/dead-letters")["dead_letters"] == []
        assert _api(server.url, "/dead-letters/retry", {"sink": "webhook"}) == {"queued": 0}
        wait_until(lambda: manager.backlog()["webhook"] == 0, 10, "the outbox to drain")
        assert webhook_receiver.event_ids().count(poisoned) == 1  # drained: nothing more is on its way
        wait_until(lambda: manager.health()["status"] == "ok", 10, "health back to ok")
    finally:
        server.stop()
        manager.close()
