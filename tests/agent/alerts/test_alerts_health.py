"""The alerts' part of /health is computed from a snapshot alone: no manager, no database."""

from __future__ import annotations

from agent.alerts.delivery import DeliveryCounters
from agent.alerts.health import AlertsSnapshot, SinkSnapshot, alerts_health
from agent.alerts.holdback import StorageCounters


def test_a_quiet_snapshot_is_ok() -> None:
    snapshot = AlertsSnapshot(StorageCounters(), [SinkSnapshot("hook", DeliveryCounters())], {}, {"hook": 2})
    health = alerts_health(snapshot)
    assert health["status"] == "ok" and health["problems"] == []
    assert health["sinks"]["hook"]["backlog"] == 2


def test_a_stopped_thread_failures_dead_letters_and_an_unreadable_database_are_named() -> None:
    failing = DeliveryCounters(failed_attempts=4, consecutive_failures=3, last_error="timed out")
    snapshot = AlertsSnapshot(
        StorageCounters(buffered=2),
        [SinkSnapshot("hook", failing, thread_down=True), SinkSnapshot("mqtt", DeliveryCounters())],
        database_error="database is locked",
    )
    health = alerts_health(snapshot)
    assert health["status"] == "degraded"
    assert health["problems"] == [
        "alerts database unreadable: database is locked",
        "2 alert events wait in memory: the outbox cannot store them",
        "sink hook: delivery thread is not running",
        "sink hook: 3 failed attempts in a row",
    ]
    assert health["sinks"]["hook"]["last_error"] == "timed out" and health["storage"]["held_in_memory"] == 2
