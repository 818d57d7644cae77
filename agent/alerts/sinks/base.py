"""The sink interface: deliver one alert event and return only once the receiver acknowledged it."""

from __future__ import annotations

import abc
import json
from typing import Any


class SinkError(Exception):
    """The receiver did not acknowledge an alert event; the outbox will try again later.

    ``permanent`` says the receiver refused this event for good (an HTTP 4xx other than 408/429):
    after ``retry.permanent_attempts`` tries it goes to the dead letters instead of blocking the sink.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The compact UTF-8 JSON every sink sends (keys sorted, so equal payloads give equal bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode("utf-8")


class Sink(abc.ABC):
    """Delivers alert events to one receiver.

    ``send`` is called from the sink's own delivery thread, one event at a time, in outbox order.
    Constructors do no I/O; ``start`` opens connections or files, ``close`` releases them.

    A sink that can have several events in flight sets ``batch_size`` above 1 and overrides
    :meth:`send_many`: the delivery thread then hands it up to ``batch_size`` pending events at once.
    """

    batch_size: int = 1  # events the delivery thread hands to :meth:`send_many` at most

    def __init__(self, name: str) -> None:
        self.name = name

    def start(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Open connections or files (called once, from the delivery thread, before ``send``)."""

    @abc.abstractmethod
    def send(self, payload: dict[str, Any]) -> None:
        """Deliver one alert event; return only after the receiver acknowledged it.

        Raises:
            SinkError: the event was not acknowledged (it may still have arrived).
        """

    def send_many(self, payloads: list[dict[str, Any]]) -> list[Exception | None]:
        """Deliver events (outbox order); one outcome per event attempted: None once acknowledged.

        The result may be shorter than ``payloads``: events past its end were not attempted and stay
        pending as they were (no attempt counted). This default sends them one by one with
        :meth:`send` and stops at the first failure, so a receiver that is down costs one attempt,
        not one per event, and later events wait behind the failed one. An override may attempt
        them all concurrently and report each event's own acknowledgement or error.
        """
        outcomes: list[Exception | None] = []
        for payload in payloads:
            try:
                self.send(payload)
            except Exception as exc:
                outcomes.append(exc)
                break
            outcomes.append(None)
        return outcomes

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and files; ``send`` is not called afterwards."""
