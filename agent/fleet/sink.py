"""The fleet sink: every outbox event to JetStream at the site's leaf node, evidence to its object store.

Each event goes to ``watchword.<site>.alerts.<camera>`` with its event id as ``Nats-Msg-Id``, and
counts as delivered only once JetStream acknowledged it: a SIGKILL before the ack, or a lost ack,
makes the outbox send it again, and the stream's duplicate window stores it once. The leaf's
stream is sourced into the hub by NATS itself, so an uplink outage only delays the hub.

Before the event, its evidence files (crop, frame, evidence.json with the keypoints) go to the
object store ``watchword-evidence-<site>`` under ``<alert_id>/<file>`` (a file already there with
the same size is not sent again), and the event carries ``fleet_evidence``: the bucket and the
object names, which the hub reads from its mirror of that bucket.

The delivery thread hands the sink up to ``batch_size`` events at once (:meth:`FleetSink.send_many`):
they are published concurrently on the one connection (each with its evidence first, as above), and
each event's own acknowledgement or error is reported, so one lost ack costs one resend, not the
batch's. JetStream stores them in the order they reach it, which is outbox order unless one fails.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from agent.alerts.sinks.base import Sink, SinkError, encode_payload
from agent.fleet.link import NatsLink
from agent.fleet.subjects import alert_subject, evidence_bucket
from agent.redact import redact_text

log = logging.getLogger(__name__)

EVIDENCE_KEYS = ("crop", "frame", "json")


class FleetSink(Sink):
    """Publishes alert events to the site's JetStream (see the module doc).

    Args:
        name: the sink's outbox name (``fleet``).
        link: the fleet's NATS connection.
        site: the site id in subjects and the bucket name.
        evidence_dir: the agent's evidence folder (None: no evidence upload).
        ack_timeout_s: how long one event (with its evidence) may take, seconds.
        batch_size: events published concurrently at most (1: one at a time).
    """

    def __init__(
        self,
        name: str,
        link: NatsLink,
        site: str,
        *,
        evidence_dir: Path | None,
        ack_timeout_s: float = 5.0,
        batch_size: int = 1,
    ) -> None:
        super().__init__(name)
        self.batch_size = max(1, batch_size)
        self.link = link
        self.site = site
        self.evidence_dir = evidence_dir
        self.ack_timeout_s = ack_timeout_s
        self.bucket = evidence_bucket(site)
        self.duplicates = 0  # events JetStream already held (a resend after a lost ack)

    def start(self) -> None:
        self.link.start()

    def send(self, payload: dict[str, Any]) -> None:
        if not self.link.connected:
            raise SinkError(f"not connected to {self.link.shown_url} ({self.link.last_problem})")
        try:
            duplicate = self.link.call(self._publish(payload), self.ack_timeout_s)
        except SinkError:
            raise
        except Exception as exc:  # LinkError (no ack in time), JetStream errors, a lost connection
            raise SinkError(redact_text(f"fleet publish of {payload.get('event_id')}: {exc!r}")) from exc
        if duplicate:
            self.duplicates += 1

    def send_many(self, payloads: list[dict[str, Any]]) -> list[Exception | None]:
        if not payloads:
            return []
        if not self.link.connected:  # one failed attempt (the oldest event's), the rest wait behind it
            return [SinkError(f"not connected to {self.link.shown_url} ({self.link.last_problem})")]
        try:
            # each publish has its own ack timeout; the batch's evidence uploads share one more
            results = self.link.call(self._publish_many(payloads), self.ack_timeout_s * 2)
        except Exception as exc:  # no answer for the batch in time: none counts as acknowledged
            error = SinkError(redact_text(f"fleet publish of {len(payloads)} events: {exc!r}"))
            return [error for _ in payloads]
        outcomes: list[Exception | None] = []
        for payload, result in zip(payloads, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, SinkError):
                    outcomes.append(result)
                else:
                    text = f"fleet publish of {payload.get('event_id')}: {result!r}"
                    outcomes.append(SinkError(redact_text(text)))
                continue
            if result:
                self.duplicates += 1
            outcomes.append(None)
        return outcomes

    async def _publish_many(self, payloads: list[dict[str, Any]]) -> list[bool | BaseException]:
        return await asyncio.gather(*(self._publish(payload) for payload in payloads), return_exceptions=True)

    async def _publish(self, payload: dict[str, Any]) -> bool:
        js = self.link.jetstream()
        message = dict(payload)
        if self.evidence_dir is not None and isinstance(payload.get("evidence"), dict):
            message["fleet_evidence"] = await self._upload(js, payload["evidence"])
        camera = str(payload.get("camera"))
        ack = await js.publish(
            alert_subject(self.site, camera),
            encode_payload(message),
            timeout=self.ack_timeout_s,
            headers={"Nats-Msg-Id": str(payload["event_id"])},
        )
        return bool(ack.duplicate)

    async def _upload(self, js: JetStreamContext, evidence: dict[str, Any]) -> dict[str, Any]:
        assert self.evidence_dir is not None
        store = await js.object_store(self.bucket)
        names: dict[str, Any] = {"bucket": self.bucket}
        for key in EVIDENCE_KEYS:
            relative = evidence.get(key)
            if not isinstance(relative, str):
                continue
            path = self.evidence_dir / relative
            try:
                data = path.read_bytes()
            except OSError:  # pruned or never written: the event goes without it
                continue
            try:
                info = await store.get_info(relative)
                stored = info.size == len(data) and not info.deleted
            except Exception:
                stored = False
            if not stored:
                await store.put(relative, data)
            names[key] = relative
        return names
