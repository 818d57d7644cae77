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
    """

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

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and files; ``send`` is not called afterwards."""
