"""Batched delivery through the outbox: a sink with ``batch_size`` > 1 gets several events at once.

Real SQLite outbox and delivery thread; the sink is an in-process receiver that reports each event's
own outcome (as the fleet sink does for JetStream acks, tested against a real nats-server in
tests/agent/fleet/test_fleet_sink.py).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from agent.alerts.config import RetryConfig
from agent.alerts.delivery import DeliveryWorker
from agent.alerts.outbox import Outbox
from agent.alerts.sinks.base import Sink, SinkError

from .helpers import wait_until
from .test_outbox import FAST_RETRY, FakeSink, payload


class BatchSink(Sink):
    """Acknowledges each event of a batch on its own; refuses ``failing[event_id]`` more times."""

    def __init__(self, batch_size: int, failing: dict[str, int], *, permanent: bool = False) -> None:
        super().__init__("batch")
        self.batch_size = batch_size
        self.failing = dict(failing)
        self.permanent = permanent
        self.batches: list[list[str]] = []
        self.attempts: dict[str, list[float]] = {}
        self.stored: list[str] = []
        self._lock = threading.Lock()

    def send(self, payload: dict[str, Any]) -> None:
        raise AssertionError("a batching sink is given send_many")

    def send_many(self, payloads: list[dict[str, Any]]) -> list[Exception | None]:
        outcomes: list[Exception | None] = []
        with self._lock:
            self.batches.append([p["event_id"] for p in payloads])
            for p in payloads:
                event_id = p["event_id"]
                self.attempts.setdefault(event_id, []).append(time.monotonic())
                if self.failing.get(event_id, 0) > 0:
                    self.failing[event_id] -= 1
                    outcomes.append(SinkError("refused", permanent=self.permanent))
                    continue
                self.stored.append(event_id)
                outcomes.append(None)
        return outcomes


def _attempts(path: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT a.alert_id, d.state, d.attempts FROM deliveries d JOIN alerts a ON a.id = d.event_row"
        ).fetchall()
    return {alert_id: (state, attempts) for alert_id, state, attempts in rows}


def test_pending_batch_is_the_oldest_pending_events_in_outbox_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    rows = [outbox.enqueue(payload(f"a{i}"), ["s"], created_at=float(i)) for i in range(5)]
    first = outbox.pending_batch("s", 2)
    outbox.mark_delivered_many(first[:1], 10.0)  # a0 delivered
    batch = outbox.pending_batch("s", 3)
    assert [d.event_row for d in batch] == rows[1:4]
    assert [d.payload["alert_id"] for d in batch] == ["a1", "a2", "a3"]
    assert outbox.next_pending("s") == batch[0]
    outbox.mark_delivered_many(outbox.pending_batch("s", 10), 11.0)
    assert outbox.pending_batch("s", 10) == [] and outbox.next_pending("s") is None
    assert outbox.delivery_states()["s"] == {"pending": 0, "delivered": 5, "failed": 0}
    outbox.close()


def test_a_failed_event_in_a_batch_backs_off_on_its_own_and_is_retried_first(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    outbox = Outbox(path)
    for i in range(6):
        outbox.enqueue(payload(f"a{i}"), ["batch"], created_at=float(i))
    sink = BatchSink(4, {"a1/0": 2})
    worker = DeliveryWorker(outbox, sink, FAST_RETRY, idle_poll_s=0.05)
    worker.start()
    wait_until(lambda: outbox.backlog(["batch"]) == {"batch": 0}, 5, "every event delivered")
    worker.stop(2)
    # The acknowledged ones are not sent again; the failed one heads every later batch.
    assert sink.batches == [["a0/0", "a1/0", "a2/0", "a3/0"], ["a1/0", "a4/0", "a5/0"], ["a1/0"]]
    assert sorted(sink.stored) == [f"a{i}/0" for i in range(6)]
    times = sink.attempts["a1/0"]
    assert round(times[1] - times[0], 2) >= 0.05 and round(times[2] - times[1], 2) >= 0.1, (
        times
    )  # its own backoff
    assert _attempts(path) == {f"a{i}": ("delivered", 3 if i == 1 else 1) for i in range(6)}
    assert worker.counters.delivered == 6 and worker.counters.failed_attempts == 2
    outbox.close()


def test_a_permanently_refused_event_in_a_batch_goes_to_the_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    outbox = Outbox(path)
    for i in range(3):
        outbox.enqueue(payload(f"a{i}"), ["batch"], created_at=float(i))
    sink = BatchSink(8, {"a1/0": 99}, permanent=True)
    retry = RetryConfig(initial_s=0.01, max_s=0.01, permanent_attempts=2)
    worker = DeliveryWorker(outbox, sink, retry, idle_poll_s=0.05)
    worker.start()
    wait_until(lambda: outbox.backlog(["batch"]) == {"batch": 0}, 5, "the batch settled")
    worker.stop(2)
    assert _attempts(path) == {"a0": ("delivered", 1), "a1": ("failed", 2), "a2": ("delivered", 1)}
    assert worker.counters.given_up == 1 and sink.stored == ["a0/0", "a2/0"]
    outbox.close()


def test_the_default_batch_sends_one_at_a_time_and_stops_at_the_first_failure() -> None:
    sink = FakeSink()
    events = [payload(f"a{i}") for i in range(3)]
    assert sink.batch_size == 1
    assert sink.send_many(events) == [None, None, None]
    sink.fail_next = 1
    outcomes = sink.send_many(events)
    assert len(outcomes) == 1 and isinstance(outcomes[0], SinkError)  # the rest not attempted
    assert sink.received == ["a0/0", "a1/0", "a2/0"]
