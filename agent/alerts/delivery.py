"""One delivery thread per sink: send the sink's pending outbox events in order, mark each on ack.

Delivery is in order per sink: while the oldest pending event fails, later ones wait behind it
(a sink that is down is down for all events), with capped exponential backoff between attempts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.alerts.config import RetryConfig
from agent.alerts.outbox import Outbox, PendingDelivery
from agent.alerts.sinks.base import Sink, SinkError

log = logging.getLogger(__name__)


@dataclass
class DeliveryCounters:
    """What one sink's delivery thread did since it started."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    last_error: str | None = None
    last_delivered_at: float | None = None


def _should_log(attempts: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... failure of an event, so a long outage does not flood the log."""
    return attempts & (attempts - 1) == 0


class DeliveryWorker:
    """Sends ``sink``'s pending events from ``outbox`` in a daemon thread.

    Args:
        outbox: the shared outbox.
        sink: the sink this thread owns (started in, and only used from, this thread).
        retry: backoff between failed attempts and the optional attempt limit.
        clock: UNIX-seconds clock for the delivery times recorded in the outbox (backoff itself runs
            on ``time.monotonic``).
        idle_poll_s: how often an idle thread looks for new events without a :meth:`wake`.
    """

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        retry: RetryConfig,
        *,
        clock: Callable[[], float] = time.time,
        idle_poll_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.sink = sink
        self.retry = retry
        self.clock = clock
        self.idle_poll_s = idle_poll_s
        self.counters = DeliveryCounters()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alerts-sink-{sink.name}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Tell the thread that new events are queued."""
        self._wake.set()

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread (an attempt in progress finishes) and close the sink; True if it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        ended = not self._thread.is_alive()
        if not ended:
            log.warning(
                "sink %s: delivery thread still busy after %.1f s; closing anyway", self.sink.name, timeout_s
            )
        try:
            self.sink.close()
        except Exception:
            log.exception("sink %s: close failed", self.sink.name)
        return ended

    def _run(self) -> None:
        try:
            self.sink.start()
        except Exception as exc:  # the first send tries again
            log.warning("sink %s: start failed: %s", self.sink.name, exc)
        not_before = 0.0  # monotonic backoff deadline of the head event; a restart retries at once
        while not self._stop.is_set():
            self._wake.clear()
            try:
                delivery = self.outbox.next_pending(self.sink.name)
            except Exception:
                log.exception("sink %s: reading the outbox failed", self.sink.name)
                self._stop.wait(self.idle_poll_s)
                continue
            if delivery is None:
                self._wake.wait(self.idle_poll_s)
                continue
            wait_s = not_before - time.monotonic()
            if wait_s > 0:
                self._stop.wait(min(wait_s, self.idle_poll_s))
                continue
            not_before = self._attempt(delivery)

    def _attempt(self, delivery: PendingDelivery) -> float:
        """Send one event and record the outcome; return the monotonic time of the next attempt."""
        try:
            self.sink.send(delivery.payload)
        except Exception as exc:
            error = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
            return self._failed(delivery, error, unexpected=not isinstance(exc, SinkError))
        now = self.clock()
        try:
            self.outbox.mark_delivered(delivery, now)
        except Exception:
            # The receiver has it; it will get it again after the retry and drop it by event_id.
            log.exception("sink %s: recording the delivery of %s failed", self.sink.name, _event_id(delivery))
            return time.monotonic() + self.retry.initial_s
        self.counters.delivered += 1
        self.counters.last_delivered_at = now
        log.debug("sink %s: delivered %s", self.sink.name, _event_id(delivery))
        return 0.0

    def _failed(self, delivery: PendingDelivery, error: str, *, unexpected: bool) -> float:
        attempts = delivery.attempts + 1
        give_up = self.retry.max_attempts is not None and attempts >= self.retry.max_attempts
        delay_s = self.retry.delay_s(attempts)
        self.counters.failed_attempts += 1
        self.counters.last_error = error
        if give_up:
            self.counters.given_up += 1
            log.error(
                "sink %s: giving up on %s after %d attempts: %s",
                self.sink.name,
                _event_id(delivery),
                attempts,
                error,
            )
        elif unexpected:
            log.error("sink %s: unexpected error sending %s: %s", self.sink.name, _event_id(delivery), error)
        elif _should_log(attempts):
            log.warning(
                "sink %s: attempt %d for %s failed: %s", self.sink.name, attempts, _event_id(delivery), error
            )
        try:
            self.outbox.mark_failed_attempt(
                delivery, error, next_attempt_at=self.clock() + delay_s, give_up=give_up
            )
        except Exception:
            log.exception("sink %s: recording a failed attempt failed", self.sink.name)
        return 0.0 if give_up else time.monotonic() + delay_s


def _event_id(delivery: PendingDelivery) -> str:
    return str(delivery.payload.get("event_id", delivery.event_row))
