"""The alert manager's part of ``/health``: each sink's backlog, dead letters and failures, and the
storage (events held in memory because the outbox refused them, events lost)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent.redact import redact_text

if TYPE_CHECKING:
    from agent.alerts.manager import AlertManager

# A sink whose oldest event failed this many times in a row makes /health say degraded.
FAILING_SINK_ATTEMPTS = 3


def alerts_health(manager: AlertManager) -> dict[str, Any]:
    """Sinks (backlog, dead letters, failures) and storage (events held in memory, drops), with a
    ``status`` of ok or degraded and the ``problems`` behind a degraded one."""
    problems: list[str] = []
    storage = replace(manager.holdback.counters)
    try:
        dead = manager.outbox.dead_letter_counts()
        backlog = manager.backlog()
    except sqlite3.Error as exc:
        dead, backlog = {}, {}
        problems.append(f"alerts database unreadable: {exc}")
    if storage.buffered:
        problems.append(f"{storage.buffered} alert events wait in memory: the outbox cannot store them")
    if storage.dropped:
        problems.append(f"{storage.dropped} alert events could not be stored and were lost")
    sinks: dict[str, Any] = {}
    for worker in manager.workers:
        name, counters = worker.sink.name, worker.counters
        if manager.running and not worker.alive:
            problems.append(f"sink {name}: delivery thread is not running")
        if dead.get(name):
            problems.append(f"sink {name}: {dead[name]} dead letters")
        if counters.consecutive_failures >= FAILING_SINK_ATTEMPTS:
            problems.append(f"sink {name}: {counters.consecutive_failures} failed attempts in a row")
        if counters.unrecorded:
            problems.append(f"sink {name}: {counters.unrecorded} deliveries not yet recorded")
        sinks[name] = {
            "backlog": backlog.get(name, 0),
            "dead_letters": dead.get(name, 0),
            "delivered": counters.delivered,
            "failed_attempts": counters.failed_attempts,
            "consecutive_failures": counters.consecutive_failures,
            "last_error": redact_text(counters.last_error) if counters.last_error else None,
        }
    return {
        "status": "degraded" if problems else "ok",
        "problems": [redact_text(p) for p in problems],
        "sinks": sinks,
        "storage": {
            "held_in_memory": storage.buffered,
            "dropped": storage.dropped,
            "stored_late": storage.stored_late,
            "enqueue_errors": storage.enqueue_errors,
            "evidence_errors": storage.evidence_errors,
            "last_error": storage.last_error,
        },
    }
