"""The API's connections: held below the open-file limit, and closed when no request arrives.

uvicorn's HTTP/1.1 protocol (h11) times out only idle keep-alive connections, after a response. A
client that opens a connection and sends its request head one line at a time (Slowloris) keeps the
connection, and one of the process's file descriptors, for as long as it likes: a thousand of them
used up a 1024-file limit, so that ``/livez`` timed out and alerts lost their evidence (EMFILE).
:class:`GuardedH11Protocol` adds two rules to uvicorn's protocol:

- **Request timeout.** A request, head and body, must arrive whole within ``request_timeout_s`` of
  the connection opening or of the previous answer on it; otherwise the connection is closed.
  A request that has arrived (a long stream of live frames or events included) is not timed.
- **Connection cap.** At most ``max_connections`` connections are open. A new one beyond that
  closes the connection that has waited longest for its request (a slow or an idle one): a client
  that sends its request at once is answered however many slow ones there are. When every open
  connection is busy with a request or a stream, the new one is closed at once.

:func:`connection_cap` sizes ``max_connections`` under the open-file limit, keeping a reserve for
what the rest of the agent opens (evidence, outbox, SQLite, cameras).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.api.metrics import Metric
from agent.file_limits import open_file_count, open_file_limit
from agent.log_limits import LogBudget

log = logging.getLogger(__name__)

CLOSE_REASONS = ("request_timeout", "evicted", "refused")
# asyncio accepts up to the listen backlog in one go before any protocol runs; those descriptors
# exist on top of the cap for a moment, so the backlog is kept small and counted in the reserve.
LISTEN_BACKLOG = 64
MIN_CONNECTIONS = 8
_WAITING_STATES = (h11.IDLE, h11.SEND_BODY)


def connection_cap(max_connections: int, reserved_files: int) -> tuple[int, str]:
    """The most connections the API may hold, and a line saying how it was sized.

    ``max_connections`` at most; fewer where the open-file limit, less the descriptors open now,
    ``reserved_files`` and :data:`LISTEN_BACKLOG`, leaves less room (never below :data:`MIN_CONNECTIONS`).
    """
    limit = open_file_limit()
    in_use = open_file_count() or 0
    room = limit - in_use - reserved_files - LISTEN_BACKLOG
    cap = max(MIN_CONNECTIONS, min(max_connections, room))
    why = (
        f"at most {cap} connections (api.max_connections {max_connections}; open-file limit {limit}, "
        f"{in_use} open, {reserved_files} reserved, backlog {LISTEN_BACKLOG})"
    )
    if room < MIN_CONNECTIONS:
        why += ": the open-file limit is too low for the reserve; raise it (ulimit -n)"
    return cap, why


class ConnectionLimits:
    """The cap, the timeout and the state they need, shared by the connections of one server.

    Used on the server's event loop only; :meth:`metrics` may be read from any thread.
    """

    def __init__(self, max_connections: int, request_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.open = 0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        # Connections waiting for a request, the longest waiting first (dicts keep insertion order).
        self.waiting: dict[GuardedH11Protocol, None] = {}
        self._log_budget = LogBudget(burst=1)

    def note_full(self, action: str) -> None:
        """Count and (a line a minute at most) log a connection closed because the cap was reached."""
        self.closed[action] += 1
        refused = self._log_budget.take()
        if refused is not None:
            log.warning(
                "api: %d connections open, the most allowed (api.max_connections); %s "
                "(%d closed so far for waiting longest, %d refused)",
                self.open,
                "closed the one that waited longest for its request"
                if action == "evicted"
                else "refused a new one: every connection is busy",
                self.closed["evicted"],
                self.closed["refused"],
            )

    def metrics(self) -> list[Metric]:
        """``watchword_api_connections`` (open, and the cap) and connections the agent closed, by why."""
        closed = Metric(
            "watchword_api_connections_closed_total",
            "counter",
            "API connections the agent closed: request_timeout, evicted (cap reached) or refused",
        )
        for reason, count in self.closed.items():
            closed.add(count, reason=reason)
        return [
            Metric("watchword_api_connections", "gauge", "API connections open").add(self.open),
            Metric("watchword_api_connections_max", "gauge", "API connections allowed").add(
                self.max_connections
            ),
            closed,
        ]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the request timeout and the connection cap of ``limits``."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._counted = False
        self._request_timer: asyncio.TimerHandle | None = None

    @classmethod
    def factory(cls, limits: ConnectionLimits) -> type[asyncio.Protocol]:
        """What uvicorn's ``http`` option takes: it calls it with keyword arguments per connection."""
        return cast("type[asyncio.Protocol]", functools.partial(cls, limits=limits))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        if limits.open >= limits.max_connections:
            longest = next(iter(limits.waiting), None)
            if longest is None:
                limits.note_full("refused")
                transport.abort()
                return
            limits.note_full("evicted")
            longest._close()
        self._counted = True
        limits.open += 1
        self._await_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self.limits.waiting and self.conn.their_state not in _WAITING_STATES:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._counted and not self.transport.is_closing() and self.conn.their_state in _WAITING_STATES:
            self._await_request()  # the next request (or the rest of this one's body) is due

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    # --- the request timer -----------------------------------------------------------------

    def _await_request(self) -> None:
        self._stop_waiting()
        self.limits.waiting[self] = None  # at the end: the most recent to start waiting
        self._request_timer = self.loop.call_later(self.limits.request_timeout_s, self._request_timed_out)

    def _stop_waiting(self) -> None:
        self.limits.waiting.pop(self, None)
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self in self.limits.waiting:
            self.limits.closed["request_timeout"] += 1
            self._close()

    def _close(self) -> None:
        self._release()
        self.transport.close()

    def _release(self) -> None:
        self._stop_waiting()
        if self._counted:
            self._counted = False
            self.limits.open -= 1
