"""One delivery thread per sink: send the sink's pending outbox events in order, mark each on ack.

Delivery is in order per sink: while the oldest pending event fails, later ones wait behind it
(a sink that is down is down for all events), with capped exponential backoff between attempts.
An event the receiver refuses for good (``SinkError.permanent``, e.g. HTTP 400) is tried
``retry.permanent_attempts`` times, then moved to the dead letters so that later events go on.
An event the receiver acknowledged but whose acknowledgement could not be recorded (disk full)
is not sent again: the worker retries only the recording, with backoff.

A sink with ``batch_size`` > 1 gets up to that many pending events at once (:meth:`Sink.send_many`,
outbox order); each acknowledged one is marked delivered (one transaction for the batch) and each
failed one goes through the rules above on its own (its attempts, backoff, dead letters). The next
batch starts at the oldest event still pending, after the backoff of the oldest that failed, so a
failed event is retried before anything newer is read; events after it that the receiver already
acknowledged are not sent again.
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
from agent.api.metrics import Metric

log = logging.getLogger(__name__)


@dataclass
class DeliveryCounters:
    """What one sink's delivery thread did since it started."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0  # events moved to the dead letters by this worker
    unrecorded: int = 0  # acknowledged events whose acknowledgement is not yet in the outbox
    consecutive_failures: int = 0  # failed attempts since the last acknowledgement
    last_error: str | None = None
    last_delivered_at: float | None = None

    def metrics(self, sink: str) -> list[Metric]:
        """Events ``sink`` acknowledged and events it gave up on (moved to the dead letters)."""
        return [
            Metric("watchword_sink_delivered_total", "counter", "Alert events a sink acknowledged").add(
                self.delivered, sink=sink
            ),
            Metric("watchword_sink_dead_letters_total", "counter", "Alert events moved to dead letters").add(
                self.given_up, sink=sink
            ),
        ]


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
        self._acked: set[int] = set()  # event rows acknowledged by the sink but not yet recorded
        self._record_failures = 0
        self._thread = threading.Thread(target=self._run, name=f"alerts-sink-{sink.name}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Tell the thread that new events are queued."""
        self._wake.set()

    def request_stop(self) -> None:
        """Ask the thread to stop after the attempt in progress; returns at once."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread (an attempt in progress finishes) and close the sink; True if it ended."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout_s))
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
        batch_size = max(1, int(getattr(self.sink, "batch_size", 1)))
        while not self._stop.is_set():
            self._wake.clear()
            try:
                batch = self.outbox.pending_batch(self.sink.name, batch_size)
            except Exception:
                log.exception("sink %s: reading the outbox failed", self.sink.name)
                self._stop.wait(self.idle_poll_s)
                continue
            if not batch:
                self._wake.wait(self.idle_poll_s)
                continue
            wait_s = not_before - time.monotonic()
            if wait_s > 0:
                self._stop.wait(min(wait_s, self.idle_poll_s))
                continue
            not_before = self._attempt(batch)

    def _attempt(self, batch: list[PendingDelivery]) -> float:
        """Send a batch of events and record each outcome; return the monotonic time of the next attempt."""
        to_send = [delivery for delivery in batch if delivery.event_row not in self._acked]
        failures: list[tuple[PendingDelivery, Exception]] = []
        if to_send:
            try:
                outcomes = self.sink.send_many([delivery.payload for delivery in to_send])
            except Exception as broken:  # a sink whose batch call itself broke: the head event failed
                outcomes = [broken]
            for delivery, outcome in zip(to_send, outcomes[: len(to_send)], strict=False):
                if outcome is None:
                    self._acked.add(delivery.event_row)
                else:
                    failures.append((delivery, outcome))
        acked = [delivery for delivery in batch if delivery.event_row in self._acked]
        next_at = self._record(acked)
        for delivery, failure in failures:
            error = str(failure) if isinstance(failure, SinkError) else f"{type(failure).__name__}: {failure}"
            permanent = isinstance(failure, SinkError) and failure.permanent
            retry_at = self._failed(
                delivery, error, unexpected=not isinstance(failure, SinkError), permanent=permanent
            )
            next_at = max(next_at, retry_at)  # the longest backoff among them (0.0: given up)
        return next_at

    def _record(self, acked: list[PendingDelivery]) -> float:
        """Mark acknowledged events delivered in one transaction; 0.0, or when to retry recording."""
        if not acked:
            return 0.0
        now = self.clock()
        try:
            self.outbox.mark_delivered_many(acked, now)
        except Exception as exc:
            # The receiver has them: only the recording is retried (with backoff), they are not resent.
            self._record_failures += 1
            self.counters.unrecorded = len(self._acked)
            if _should_log(self._record_failures):
                log.error(
                    "sink %s: %s was delivered but recording that failed (%s); retrying the record only",
                    self.sink.name,
                    ", ".join(_event_id(delivery) for delivery in acked),
                    exc,
                )
            return time.monotonic() + self.retry.delay_s(self._record_failures)
        for delivery in acked:
            self._acked.discard(delivery.event_row)
            log.debug("sink %s: delivered %s", self.sink.name, _event_id(delivery))
        self._record_failures = 0
        self.counters.consecutive_failures = 0
        self.counters.unrecorded = len(self._acked)
        self.counters.delivered += len(acked)
        self.counters.last_delivered_at = now
        return 0.0

    def _failed(
        self, delivery: PendingDelivery, error: str, *, unexpected: bool, permanent: bool = False
    ) -> float:
        attempts = delivery.attempts + 1
        limit = self.retry.permanent_attempts if permanent else self.retry.max_attempts
        if permanent and self.retry.max_attempts is not None:
            limit = min(self.retry.permanent_attempts, self.retry.max_attempts)
        give_up = limit is not None and attempts >= limit
        delay_s = self.retry.delay_s(attempts)
        self.counters.failed_attempts += 1
        self.counters.consecutive_failures += 1
        self.counters.last_error = error
        if give_up:
            self.counters.given_up += 1
            log.error(
                "sink %s: %s moved to the dead letters after %d attempts: %s",
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


def stop_workers(workers: list[DeliveryWorker], timeout_s: float) -> list[str]:
    """Stop every worker at once and wait for all within one ``timeout_s``; return those still busy.

    A sink stuck on a hung receiver costs the whole shutdown at most ``timeout_s``, not that much
    per sink.
    """
    running = [worker for worker in workers if worker.alive]
    for worker in running:
        worker.request_stop()
    deadline = time.monotonic() + timeout_s
    busy = []
    for worker in running:
        if not worker.stop(deadline - time.monotonic()):
            busy.append(worker.sink.name)
    return busy
