"""The SQLite outbox and its delivery threads: ack-only delivery, order, backoff, restarts, history."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.alerts.config import RetryConfig
from agent.alerts.delivery import DeliveryWorker
from agent.alerts.outbox import SCHEMA_VERSION, Outbox, OutboxError
from agent.alerts.sinks.base import Sink, SinkError

from .helpers import wait_until

FAST_RETRY = RetryConfig(initial_s=0.05, max_s=0.2, factor=2.0)


class FakeSink(Sink):
    """Records what it is sent; fails the next ``fail_next`` sends (after receiving them if ``lose_ack``)."""

    def __init__(self, name: str = "fake", fail_next: int = 0, lose_ack: bool = False) -> None:
        super().__init__(name)
        self.fail_next = fail_next
        self.lose_ack = lose_ack
        self.received: list[str] = []
        self.attempt_times: list[float] = []
        self._lock = threading.Lock()

    def send(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.attempt_times.append(time.monotonic())
            failing = self.fail_next > 0
            self.fail_next -= 1 if failing else 0
            if not failing or self.lose_ack:
                self.received.append(payload["event_id"])
        if failing:
            raise SinkError("receiver unavailable")


def payload(
    alert_id: str,
    seq: int = 0,
    event: str = "opened",
    camera: str = "cam1",
    query_id: int = 7,
    started: float = 1000.0,
) -> dict[str, Any]:
    return {
        "event_id": f"{alert_id}/{seq}",
        "alert_id": alert_id,
        "seq": seq,
        "event": event,
        "camera": camera,
        "query_id": query_id,
        "track_id": 1,
        "started_at": started,
        "updated_at": started + seq,
    }


def _worker(outbox: Outbox, sink: Sink, retry: RetryConfig = FAST_RETRY) -> DeliveryWorker:
    worker = DeliveryWorker(outbox, sink, retry, idle_poll_s=0.05)
    worker.start()
    return worker


def test_enqueue_stores_one_pending_delivery_per_sink(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    assert outbox.enqueue(payload("a"), ["mqtt", "webhook"], created_at=1.0) is not None
    assert outbox.backlog(["mqtt", "webhook", "jsonl"]) == {"mqtt": 1, "webhook": 1, "jsonl": 0}
    # The same event again (a retried submit, a replay) is not queued twice.
    assert outbox.enqueue(payload("a"), ["mqtt", "webhook"], created_at=2.0) is None
    assert outbox.backlog() == {"mqtt": 1, "webhook": 1}
    outbox.close()


def test_enqueue_is_atomic(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    with pytest.raises(sqlite3.IntegrityError):
        outbox.enqueue(payload("a"), ["mqtt", "mqtt"], created_at=1.0)  # second delivery row collides
    assert outbox.recent() == [] and outbox.backlog() == {}
    outbox.close()


def test_schema_version_is_recorded_and_a_newer_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    Outbox(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(OutboxError, match="newer"):
        Outbox(path)


def test_worker_delivers_in_order_and_only_marks_acknowledged_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    sink = FakeSink()
    for i in range(5):
        outbox.enqueue(payload(f"a{i}"), [sink.name], created_at=float(i))
    worker = _worker(outbox, sink)
    wait_until(lambda: outbox.backlog(["fake"]) == {"fake": 0}, 5, "delivery")
    assert sink.received == [f"a{i}/0" for i in range(5)]
    assert outbox.delivery_states()["fake"] == {"pending": 0, "delivered": 5, "failed": 0}
    wait_until(lambda: worker.counters.delivered == 5, 5, "the delivery count")
    worker.stop(2)
    outbox.close()


def test_failed_attempts_back_off_and_block_later_events(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    sink = FakeSink(fail_next=3, lose_ack=True)  # the receiver gets it but the ack is lost
    outbox.enqueue(payload("first"), [sink.name], created_at=1.0)
    outbox.enqueue(payload("second"), [sink.name], created_at=2.0)
    worker = _worker(outbox, sink)
    wait_until(lambda: outbox.backlog(["fake"]) == {"fake": 0}, 5, "delivery after retries")
    # At least once: the first event arrived 4 times (3 lost acks), and always before the second.
    assert sink.received == ["first/0"] * 4 + ["second/0"]
    gaps = [b - a for a, b in zip(sink.attempt_times, sink.attempt_times[1:4], strict=False)]
    assert [round(g, 2) >= d for g, d in zip(gaps, [0.05, 0.1, 0.2], strict=True)] == [True] * 3, gaps
    assert worker.counters.failed_attempts == 3 and worker.counters.last_error == "receiver unavailable"
    with sqlite3.connect(tmp_path / "alerts.db") as conn:
        attempts = conn.execute("SELECT attempts FROM deliveries ORDER BY event_row").fetchall()
    assert attempts == [(4,), (1,)]
    worker.stop(2)
    outbox.close()


def test_max_attempts_gives_up_and_moves_on(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    sink = FakeSink(fail_next=2)
    outbox.enqueue(payload("doomed"), [sink.name], created_at=1.0)
    outbox.enqueue(payload("next"), [sink.name], created_at=2.0)
    worker = _worker(outbox, sink, RetryConfig(initial_s=0.01, max_s=0.01, max_attempts=2))
    wait_until(lambda: outbox.backlog(["fake"]) == {"fake": 0}, 5, "the next event")
    assert sink.received == ["next/0"]
    assert outbox.delivery_states()["fake"] == {"pending": 0, "delivered": 1, "failed": 1}
    assert worker.counters.given_up == 1
    worker.stop(2)
    outbox.close()


def test_pending_events_are_sent_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    outbox = Outbox(path)
    down = FakeSink(fail_next=10**6)
    outbox.enqueue(payload("a"), [down.name], created_at=1.0)
    worker = _worker(outbox, down)
    wait_until(lambda: len(down.attempt_times) >= 2, 5, "failed attempts")
    outbox.enqueue(payload("b"), [down.name], created_at=2.0)
    worker.stop(2)
    outbox.close()

    reopened = Outbox(path)
    assert reopened.backlog() == {"fake": 2}
    up = FakeSink()
    worker = _worker(reopened, up)
    wait_until(lambda: reopened.backlog(["fake"]) == {"fake": 0}, 5, "delivery after restart")
    assert up.received == ["a/0", "b/0"]
    worker.stop(2)
    reopened.close()
    # A third start has nothing left to send: an event enqueued now is the first and only one it
    # sends (the worker sends in outbox order, so anything left over would come before it).
    third = Outbox(path)
    again = FakeSink()
    worker = _worker(third, again)
    third.enqueue(payload("c"), [again.name], created_at=3.0)
    wait_until(lambda: third.backlog(["fake"]) == {"fake": 0}, 5, "the new event")
    assert again.received == ["c/0"]
    worker.stop(2)
    third.close()


def test_history_latest_event_per_alert_with_filters(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.enqueue(payload("a", 0, started=1000.0), ["s"], created_at=1000.0)
    outbox.enqueue(payload("a", 1, "updated", started=1000.0), ["s"], created_at=1001.0)
    outbox.enqueue(payload("a", 2, "closed", started=1000.0), ["s"], created_at=1002.0)
    outbox.enqueue(payload("b", 0, camera="cam2", started=2000.0), ["s"], created_at=2000.0)
    outbox.enqueue(payload("c", 0, query_id=9, started=3000.0), ["s"], created_at=3000.0)
    assert [(p["alert_id"], p["seq"]) for p in outbox.recent()] == [("c", 0), ("b", 0), ("a", 2)]
    assert [p["alert_id"] for p in outbox.recent(camera="cam2")] == ["b"]
    assert [p["alert_id"] for p in outbox.recent(query_id=9)] == ["c"]
    assert [p["alert_id"] for p in outbox.recent(since=1500.0, until=3000.0)] == ["b"]
    assert [p["alert_id"] for p in outbox.recent(limit=1, offset=1)] == ["b"]
    assert [p["event"] for p in outbox.events("a")] == ["opened", "updated", "closed"]
    assert sorted(p["alert_id"] for p in outbox.unclosed()) == ["b", "c"]
    outbox.close()


def test_prune_keeps_alerts_with_pending_deliveries(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.enqueue(payload("old-pending"), ["s"], created_at=100.0)
    outbox.enqueue(payload("old-done"), [], created_at=100.0)
    outbox.enqueue(payload("new"), [], created_at=900.0)
    assert outbox.prune(before=500.0) == 1
    assert sorted(p["alert_id"] for p in outbox.recent()) == ["new", "old-pending"]
    outbox.close()


def test_close_leaves_a_running_threads_connection_to_it_and_refuses_its_next_call(tmp_path: Path) -> None:
    """A delivery thread whose sink outlived the stop timeout may still be inside a statement when
    the agent closes the outbox: its connection is not closed under it (that can crash SQLite), and
    its next call gets a clean OutboxError, not a closed-database error."""
    outbox = Outbox(tmp_path / "alerts.db")
    outbox.enqueue(payload("a"), ["s"], created_at=1.0)
    opened, closed, outcome = threading.Event(), threading.Event(), {}

    def straggler() -> None:
        conn = outbox._conn()  # this thread's connection, as a statement in progress holds it
        opened.set()
        closed.wait(10)
        try:  # the rest of the statement in progress
            outcome["rest"] = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except Exception as exc:
            outcome["rest"] = exc
        try:
            outbox.backlog(["s"])
        except Exception as exc:  # what the thread's next call meets
            outcome["error"] = exc

    thread = threading.Thread(target=straggler)
    thread.start()
    assert opened.wait(10)
    outbox.close()
    closed.set()
    thread.join(10)
    assert isinstance(outcome["rest"], int), outcome  # not "Cannot operate on a closed database"
    assert isinstance(outcome.get("error"), OutboxError), outcome
    with pytest.raises(OutboxError, match="closed"):
        outbox.backlog(["s"])
