"""Review marks made at the hub, applied at the site that raised the alert.

The hub publishes a mark (``{"alert_id", "action", "note", "by", "at"}``) on
``watchword.<site>.reviews`` into its stream ``WATCHWORD_REVIEWS_<site>``; the site's leaf mirrors
it, and :class:`ReviewSync` reads the mirror with a durable consumer and applies each mark through
the console's review store, so a false alarm feeds the query's negative exemplars exactly as a
mark made at the site does. A mark is acknowledged once applied (or refused for good), so marks
made while the site was offline arrive when it returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from agent.fleet.link import NatsLink
from agent.fleet.subjects import REVIEWS_STREAM, reviews_subject

log = logging.getLogger(__name__)

ACTIONS = frozenset({"acknowledge", "resolve", "true_alarm", "false_alarm", "reopen"})
DURABLE = "watchword-agent"

# mark(alert_id, action, note, by): the console's ReviewStore.mark; raises ValueError for an unknown alert
MarkFunction = Callable[[str, Any, str | None, str], Any]


def review_message(alert_id: str, action: str, note: str | None, by: str, at: float) -> bytes:
    """The JSON of one mark on the wire."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(sorted(ACTIONS))}, got {action!r}")
    return json.dumps({"alert_id": alert_id, "action": action, "note": note, "by": by, "at": at}).encode()


class ReviewSync:
    """Applies the hub's review marks for this site (see the module doc)."""

    def __init__(self, link: NatsLink, site: str, mark: Callable[[], MarkFunction | None]) -> None:
        self.link, self.site = link, site
        self._mark = mark  # the review store exists once the console has started
        self.applied = 0

    def start(self) -> None:
        self.link.spawn(self._forever())

    async def _forever(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("fleet reviews: %r; consuming again", exc)
                await asyncio.sleep(0.5)

    async def _consume(self) -> None:
        while not self.link.connected or self._mark() is None:
            await asyncio.sleep(0.2)
        js = self.link.jetstream()
        subscription = await js.pull_subscribe(
            reviews_subject(self.site), durable=DURABLE, stream=REVIEWS_STREAM
        )
        while True:
            try:
                messages = await subscription.fetch(16, timeout=1.0)
            except asyncio.TimeoutError:
                continue
            for message in messages:
                await asyncio.get_running_loop().run_in_executor(None, self._apply, message.data)
                await message.ack()

    def _apply(self, data: bytes) -> None:
        mark = self._mark()
        assert mark is not None
        try:
            body = json.loads(data)
            alert_id, action = str(body["alert_id"]), str(body["action"])
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}")
            mark(alert_id, action, body.get("note"), f"fleet:{body.get('by') or 'hub'}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("fleet review mark not applied: %s", exc)
            return
        self.applied += 1
        log.info("fleet review: %s %s", action, alert_id)
