"""The alert manager's part of ``/health``: each sink's backlog, dead letters and failures, and the
storage (events held in memory because the outbox refused them, events lost).

:func:`alerts_health` is a pure function of an :class:`AlertsSnapshot` the manager takes
(``AlertManager.health_snapshot``), so this module needs nothing of the manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.alerts.delivery import DeliveryCounters
from agent.alerts.holdback import StorageCounters
from agent.redact import redact_text

# A sink whose oldest event failed this many times in a row makes /health say degraded.
FAILING_SINK_ATTEMPTS = 3


@dataclass(frozen=True)
class SinkSnapshot:
    """One sink's delivery counters, copied, and whether its delivery thread is down while the
    manager runs."""

    name: str
    counters: DeliveryCounters
    thread_down: bool = False


@dataclass(frozen=True)
class AlertsSnapshot:
    """What ``/health`` reads of the alert manager, copied at one moment.

    ``dead_letters`` and ``backlog`` are per sink name; ``database_error`` is set (and both are
    empty) when the alerts database could not be read.
    """

    storage: StorageCounters
    sinks: list[SinkSnapshot] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)
    database_error: str | None = None


def alerts_health(snapshot: AlertsSnapshot) -> dict[str, Any]:
    """Sinks (backlog, dead letters, failures) and storage (events held in memory, drops), with a
    ``status`` of ok or degraded and the ``problems`` behind a degraded one."""
    problems: list[str] = []
    storage = snapshot.storage
    dead, backlog = snapshot.dead_letters, snapshot.backlog
    if snapshot.database_error is not None:
        problems.append(f"alerts database unreadable: {snapshot.database_error}")
    if storage.buffered:
        problems.append(f"{storage.buffered} alert events wait in memory: the outbox cannot store them")
    if storage.dropped:
        problems.append(f"{storage.dropped} alert events could not be stored and were lost")
    sinks: dict[str, Any] = {}
    for sink in snapshot.sinks:
        name, counters = sink.name, sink.counters
        if sink.thread_down:
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
