"""The push channel: Server-Sent Events for alert events and camera status, with resume.

Alert events are read from the alerts database (every event the alert manager stored, in order),
kept in a ring with increasing ids, and replayed after the ``Last-Event-ID`` a reconnecting browser
sends. Camera status is sent on connect and then once a second (not replayed: only the latest matters).
Ids start at the start time in milliseconds, so ids after a restart are above any id seen before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RING_SIZE = 2000
POLL_S = 0.25
STATUS_INTERVAL_S = 1.0
KEEPALIVE_S = 15.0
RETRY_MS = 2000


def _frame(kind: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"event: {kind}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


class EventHub:
    """Follows the alerts database and serves the SSE stream.

    Args:
        alerts_db: the alert manager's database file (read only here).
        status: returns the camera status to push (the health answer's ``cameras``).
        on_alert: called with each new alert event's payload (the alert clips), on the follower thread.
    """

    def __init__(
        self,
        alerts_db: Path | None,
        status: Callable[[], dict[str, Any]],
        on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.alerts_db = alerts_db
        self.status = status
        self.on_alert = on_alert
        self._ring: deque[tuple[int, dict[str, Any]]] = deque(maxlen=RING_SIZE)
        self._next_id = int(time.time() * 1000)
        self._row = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._follow, name="console-events", daemon=True)

    def start(self) -> None:
        if self.alerts_db is not None and self.alerts_db.exists():
            self._db = sqlite3.connect(self.alerts_db, timeout=5.0, check_same_thread=False)
            row = self._db.execute("SELECT MAX(id) FROM alerts").fetchone()
            self._row = int(row[0] or 0)
        self._thread.start()

    def close(self) -> None:
        """End every open stream within one poll; stop following the database."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(1.0)
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def publish(self, kind: str, data: dict[str, Any]) -> int:
        """Add an event to the ring; returns its id."""
        with self._lock:
            self._next_id += 1
            self._ring.append((self._next_id, {"kind": kind, "data": data}))
            return self._next_id

    def since(self, last_id: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return [(i, e) for i, e in self._ring if i > last_id]

    def last_id(self) -> int:
        with self._lock:
            return self._next_id

    def _follow(self) -> None:
        while not self._closed.wait(POLL_S):
            if self._db is None:
                continue
            try:
                rows = list(
                    self._db.execute("SELECT id, payload FROM alerts WHERE id > ? ORDER BY id", (self._row,))
                )
            except sqlite3.Error as exc:
                log.warning("console events: alerts database not readable: %s", exc)
                continue
            for row_id, payload in rows:
                self._row = int(row_id)
                event = json.loads(payload)
                self.publish("alert", event)
                if self.on_alert is not None:
                    try:
                        self.on_alert(event)
                    except Exception:  # a listener that fails never stops the push channel
                        log.exception("console events: alert listener failed")

    async def stream(self, last_event_id: str | None, disconnected: Callable[[], Any]) -> AsyncIterator[str]:
        """The SSE body: replay after ``last_event_id``, then live events and status until closed."""
        try:
            cursor = int(last_event_id) if last_event_id else self.last_id()
        except ValueError:
            cursor = self.last_id()
        yield f"retry: {RETRY_MS}\n\n"
        next_status = 0.0
        last_sent = time.monotonic()
        while not self.closed:
            for event_id, event in self.since(cursor):
                cursor = event_id
                yield _frame(event["kind"], event["data"], event_id)
                last_sent = time.monotonic()
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_S
                try:
                    status = await asyncio.to_thread(self.status)
                except Exception:  # a status that cannot be read is skipped, the stream goes on
                    log.exception("console events: status failed")
                else:
                    yield _frame("status", status)
                    last_sent = now
            elif now - last_sent >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = now
            if await disconnected():
                return
            await asyncio.sleep(POLL_S)
