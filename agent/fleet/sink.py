"""The fleet sink: every outbox event to JetStream at the site's leaf node, evidence to its object store.

Each event goes to ``watchword.<site>.alerts.<camera>`` with its event id as ``Nats-Msg-Id``, and
counts as delivered only once JetStream acknowledged it: a SIGKILL before the ack, or a lost ack,
makes the outbox send it again, and the stream's duplicate window stores it once. The leaf's
stream is sourced into the hub by NATS itself, so an uplink outage only delays the hub.

Before the event, its evidence files (crop, frame, evidence.json with the keypoints) go to the
object store ``watchword-evidence-<site>`` under ``<alert_id>/<file>`` (a file already there with
the same size is not sent again), and the event carries ``fleet_evidence``: the bucket and the
object names, which the hub reads from its mirror of that bucket.
"""

from __future__ import annotations

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
    """

    def __init__(
        self,
        name: str,
        link: NatsLink,
        site: str,
        *,
        evidence_dir: Path | None,
        ack_timeout_s: float = 5.0,
    ) -> None:
        super().__init__(name)
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
