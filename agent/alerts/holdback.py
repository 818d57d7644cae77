"""Events the outbox could not store (disk full, database locked): held in memory, retried with backoff.

The outbox is the durability promise; when it refuses a write, the event is not dropped but held
here, in order, and stored as soon as a retry succeeds. While events are held, later events queue
behind them so an alert's ``seq`` stays in order. The memory is bounded: past ``capacity`` events
new ones are dropped, counted and logged as errors (they are also what a process exit loses).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.api.metrics import Metric

log = logging.getLogger(__name__)


@dataclass
class StorageCounters:
    """What the outbox refused and what became of it (exported in metrics and /health)."""

    buffered: int = 0  # events held in memory now
    stored_late: int = 0  # events stored after being held
    dropped: int = 0  # events lost for good (memory full, or still held at exit)
    enqueue_errors: int = 0  # failed writes to the outbox (each retry counts)
    evidence_errors: int = 0  # evidence files not written
    last_error: str | None = None

    def metrics(self) -> list[Metric]:
        """Events held in memory, events lost, and failed writes of the outbox and of evidence."""
        errors = Metric("watchword_alert_storage_errors_total", "counter", "Failed alert storage writes")
        return [
            Metric("watchword_alert_events_held", "gauge", "Alert events held in memory: outbox refused").add(
                self.buffered
            ),
            Metric("watchword_alert_events_dropped_total", "counter", "Alert events lost: not storable").add(
                self.dropped
            ),
            errors.add(self.enqueue_errors, kind="outbox").add(self.evidence_errors, kind="evidence"),
        ]


class HoldBack:
    """A bounded FIFO of payloads waiting for the outbox, with capped exponential retry backoff.

    Args:
        store: writes one payload to the outbox; raises on failure.
        capacity: most events held in memory.
        initial_s, max_s: retry backoff after a failed write, seconds (monotonic clock).
        on_failure: called after each failed write (the manager prunes old evidence there).
    """

    def __init__(
        self,
        store: Callable[[dict[str, Any]], None],
        *,
        capacity: int,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.capacity = capacity
        self.initial_s, self.max_s = initial_s, max_s
        self._on_failure = on_failure
        self._held: deque[dict[str, Any]] = deque()
        self._failures = 0
        self._not_before = 0.0
        self.counters = StorageCounters()

    def __len__(self) -> int:
        return len(self._held)

    def held(self) -> list[dict[str, Any]]:
        """The payloads waiting in memory, oldest first."""
        return list(self._held)

    def put(self, payload: dict[str, Any]) -> bool:
        """Store ``payload`` (behind any held events); False when it is only held or was dropped."""
        if self._held:
            self._hold(payload)
            self.flush()
            return False
        if self._try(payload):
            return True
        self._hold(payload)
        return False

    def flush(self, *, force: bool = False) -> int:
        """Store held events in order until one fails; wait out the backoff unless ``force``.

        Returns how many were stored.
        """
        if not self._held or (not force and time.monotonic() < self._not_before):
            return 0
        stored = 0
        while self._held:
            if not self._try(self._held[0]):
                break
            self._held.popleft()
            stored += 1
        self.counters.buffered = len(self._held)
        self.counters.stored_late += stored
        if stored and not self._held:
            log.warning("outbox: storing works again; all %d held events are stored", stored)
        return stored

    def drop_all(self) -> int:
        """Give up on every held event (at exit); count, log and return them."""
        lost = len(self._held)
        if lost:
            first = self._held[0].get("event_id")
            self.counters.dropped += lost
            log.error("outbox: %d alert events could not be stored and are lost (first %s)", lost, first)
        self._held.clear()
        self.counters.buffered = 0
        return lost

    def _hold(self, payload: dict[str, Any]) -> None:
        if len(self._held) >= self.capacity:
            self.counters.dropped += 1
            log.error(
                "outbox: alert event %s dropped: %d events already wait in memory for storage",
                payload.get("event_id"),
                len(self._held),
            )
            return
        self._held.append(payload)
        self.counters.buffered = len(self._held)

    def _try(self, payload: dict[str, Any]) -> bool:
        """True once ``payload`` needs no more tries (stored, or refused for good and counted)."""
        try:
            self._store(payload)
        except (ValueError, TypeError) as exc:  # not storable at all (NaN in a score): no retry helps
            self.counters.dropped += 1
            log.error(
                "outbox: alert event %s cannot be stored and is dropped: %s", payload.get("event_id"), exc
            )
            return True
        except Exception as exc:  # sqlite3.Error, OSError: disk full, locked, read-only
            self._failures += 1
            self.counters.enqueue_errors += 1
            self.counters.last_error = str(exc)
            delay_s = min(self.max_s, self.initial_s * 2 ** min(self._failures - 1, 16))
            self._not_before = time.monotonic() + delay_s
            if self._failures & (self._failures - 1) == 0:  # 1st, 2nd, 4th... failure in a row
                log.error(
                    "outbox: alert event %s could not be stored (%s); held in memory, retrying in %.1f s",
                    payload.get("event_id"),
                    exc,
                    delay_s,
                )
            if self._on_failure is not None:
                self._on_failure()
            return False
        self._failures = 0
        return True
