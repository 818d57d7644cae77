"""SIGKILL the agent mid-run, restart it on the same database: no alert lost, none delivered twice
(beyond the one a sink may have had in flight at the kill, which receivers drop by event_id)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from .helpers import Mosquitto, MqttSubscriber, WebhookReceiver, alerts_settings, wait_until

SCRIPT = Path(__file__).with_name("scripted_agent.py")
REPO = Path(__file__).resolve().parents[3]


class ScriptedAgent:
    """The scripted agent in a subprocess; collects the events it reports as durable."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.lines: list[str] = []
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), str(config), *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env=env,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def events(self) -> list[str]:
        return [line.split()[1] for line in list(self.lines) if line.startswith("event ")]

    def finish(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code


def _stored_events(database: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(database) as conn:
        return [
            (a, int(s), e) for a, s, e in conn.execute("SELECT alert_id, seq, event FROM alerts ORDER BY id")
        ]


def _pending(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT sink, COUNT(*) FROM deliveries WHERE state = 'pending' GROUP BY sink")
        return {str(sink): int(count) for sink, count in rows}


@pytest.mark.slow
def test_sigkill_then_restart_loses_no_alert_and_duplicates_none(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.delay_s = 0.02  # a slow receiver, so the webhook backlog grows
    settings = alerts_settings(
        tmp_path, webhook_url=webhook_receiver.url, mqtt_port=mosquitto.port, jsonl=True, drain_timeout_s=10.0
    )
    config = tmp_path / "alerts.json"
    config.write_text(json.dumps(settings))
    database, log = Path(settings["database"]), tmp_path / "agent.log"

    first = ScriptedAgent(config, log, "--first-track", "1", "--tracks", "2000", "--interval-s", "0.005")
    wait_until(lambda: len(first.events()) >= 60 or first.process.poll() is not None, 30, "60 durable events")
    assert first.process.poll() is None, log.read_text()
    first.process.kill()  # SIGKILL: no cleanup, no shutdown close, no drain
    assert first.finish(10) == -9
    durable_before_kill = first.events()
    assert _pending(database).get("webhook", 0) > 0, "the kill should leave undelivered events behind"

    second = ScriptedAgent(config, log, "--first-track", "100000", "--tracks", "5", "--drain")
    assert second.finish(60) == 0, log.read_text()
    assert second.lines[-1] == "drained"

    stored = _stored_events(database)
    stored_ids = {f"{alert_id}/{seq}" for alert_id, seq, _ in stored}
    assert len(stored_ids) == len(stored)
    # No loss: every event a submit acknowledged before the kill is stored, and every stored
    # event reached every receiver.
    assert set(durable_before_kill) <= stored_ids
    assert set(second.events()) <= stored_ids
    assert _pending(database) == {}
    wait_until(lambda: set(mqtt_subscriber.event_ids()) == stored_ids, 10, "every event over MQTT")
    jsonl_ids = [
        json.loads(line)["event_id"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()
    ]
    received = {
        "webhook": webhook_receiver.event_ids(),
        "mqtt": mqtt_subscriber.event_ids(),
        "jsonl": jsonl_ids,
    }
    for sink, ids in received.items():
        assert set(ids) == stored_ids, sink
        # At most the one event in flight at the kill arrives twice; receivers drop it by event_id.
        repeats = sum(count - 1 for count in Counter(ids).values())
        assert repeats <= 1, (sink, Counter(ids).most_common(3))

    # Every alert is closed exactly once, as its last event; alerts the kill left open are closed
    # by the restart.
    events_by_alert: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for alert_id, seq, event in stored:
        events_by_alert[alert_id].append((seq, event))
    reasons: Counter[str] = Counter()
    for alert_id, events in events_by_alert.items():
        assert [seq for seq, _ in events] == list(range(len(events))), alert_id
        assert [event for _, event in events].count("closed") == 1 and events[-1][1] == "closed", alert_id
    by_event = {r.payload["event_id"]: r.payload for r in webhook_receiver.accepted()}
    for payload in by_event.values():
        if payload["event"] == "closed":
            reasons[payload["close_reason"]] += 1
        if payload["close_reason"] == "agent_restart":
            # The interrupted alert's evidence record follows it to the close.
            record = json.loads((Path(settings["evidence_dir"]) / payload["evidence"]["json"]).read_text())
            assert record["alert"]["event_id"] == payload["event_id"]
    assert 1 <= reasons["agent_restart"] <= 2, reasons
    assert reasons["track_ended"] >= 30 and len(events_by_alert) >= 35
