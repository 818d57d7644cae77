"""The hub side: fleet queries, review marks, alerts and evidence, through the hub's JetStream.

:class:`FleetHub` is what ``watchword fleet ...`` and the bench use. The hub keeps no state of
its own: the alerts are the sourced stream ``WATCHWORD_ALERTS`` (:class:`AlertIndex` rebuilds its
list from the stream's start), the evidence is each site's mirrored object store, the fleet
queries are the KV bucket, the review marks are the per-site review streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agent.fleet.config import NatsConnectionConfig
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_hub
from agent.fleet.queries import FleetQuery, new_key
from agent.fleet.reviews import review_message
from agent.fleet.subjects import ALERTS_STREAM, QUERIES_BUCKET, reviews_subject
from agent.fleet.trial import try_reply_prefix, try_subject

log = logging.getLogger(__name__)

NO_RESPONDERS = "503"  # the status of the empty message NATS sends when nobody subscribes


class FleetHubError(RuntimeError):
    """A hub operation that failed (not connected, unknown query); the message says why."""


async def read_object(js: JetStreamContext, bucket: str, name: str) -> bytes:
    """An object of a (mirrored) object store, checked against its SHA-256 digest.

    nats-py's own ``get`` finds the stream by subject, which a mirror (no subjects) cannot answer.
    """
    info = await (await js.object_store(bucket)).get_info(name)
    if not info.size:
        return b""
    subscription = await js.subscribe(
        f"$O.{bucket}.C.{info.nuid}", stream=f"OBJ_{bucket}", ordered_consumer=True
    )
    data = bytearray()
    try:
        while len(data) < info.size:
            message = await subscription.next_msg(timeout=5.0)
            data += message.data
    finally:
        await subscription.unsubscribe()
    digest = (info.digest or "").split("=", 1)[-1]
    if (
        digest
        and base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)) != hashlib.sha256(data).digest()
    ):
        raise FleetHubError(f"evidence {bucket}/{name}: digest mismatch")
    return bytes(data)


async def follow_stream(
    link: NatsLink, stream: str, subject: str, handle: Callable[[str, bytes], None]
) -> None:
    """Hand every message of ``stream`` (from its first) to ``handle``, then each new one, for ever.

    After a reconnection (a hub restart) it subscribes again from the sequence after the last one
    handled, so nothing is handled twice or skipped.
    """
    next_seq = 1
    while True:
        try:
            while not link.connected:
                await asyncio.sleep(0.2)
            generation = link.connections
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=next_seq)
            subscription = await link.jetstream().subscribe(
                subject, stream=stream, ordered_consumer=True, config=config
            )
            try:
                while True:
                    try:
                        message = await subscription.next_msg(timeout=1.0)
                    except asyncio.TimeoutError:
                        if link.connections != generation:
                            break
                        continue
                    handle(message.subject, message.data)
                    next_seq = message.metadata.sequence.stream + 1
            finally:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("fleet: following %s: %r", stream, exc)
            await asyncio.sleep(0.5)


class AlertIndex:
    """Every alert at the hub, rebuilt from ``WATCHWORD_ALERTS`` and kept up to date live.

    ``alerts`` maps alert id to its latest event; ``events`` counts stored events by event id (a
    count above one is a duplicate at the hub). ``on_event`` is called with each new payload.
    """

    def __init__(self, on_event: Callable[[dict[str, Any], float], None] | None = None) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        self.events: dict[str, int] = {}
        self.on_event = on_event
        self.lock = threading.Lock()

    def add(self, subject: str, data: bytes) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("fleet: %s: an alert that is not JSON", subject)
            return
        site = subject.split(".")[1]
        if payload.get("site") != site:  # a site may only speak for itself
            log.warning("fleet: %s carries site %r; dropped", subject, payload.get("site"))
            return
        with self.lock:
            event_id = str(payload.get("event_id"))
            self.events[event_id] = self.events.get(event_id, 0) + 1
            alert_id = str(payload.get("alert_id"))
            current = self.alerts.get(alert_id)
            if current is None or int(payload.get("seq", 0)) >= int(current.get("seq", 0)):
                self.alerts[alert_id] = payload
        if self.on_event is not None:
            self.on_event(payload, time.time())

    def list(
        self,
        *,
        site: str | None = None,
        camera: str | None = None,
        query: str | None = None,
        severity: str | None = None,
    ) -> list[dict[str, Any]]:
        """The latest event of each alert, newest first, filtered."""
        with self.lock:
            rows = list(self.alerts.values())
        keep = [
            a
            for a in rows
            if (site is None or a.get("site") == site)
            and (camera is None or a.get("camera") == camera)
            and (query is None or str(a.get("query_id")) == query or a.get("query") == query)
            and (severity is None or a.get("severity") == severity)
        ]
        return sorted(keep, key=lambda a: a.get("started_at") or 0, reverse=True)


class FleetHub:
    """A connection to the hub with the fleet's operations (blocking; for commands and servers)."""

    def __init__(self, connection: NatsConnectionConfig, *, timeout_s: float = 5.0) -> None:
        self.link = NatsLink(connection, "watchword-hub")
        self.timeout_s = timeout_s
        self.index: AlertIndex | None = None

    def __enter__(self) -> FleetHub:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        self.link.start()
        if not self.link.wait_connected(self.timeout_s):
            raise FleetHubError(f"cannot reach the hub at {self.link.shown_url}: {self.link.last_problem}")

    def close(self) -> None:
        self.link.close()

    def _js(self) -> JetStreamContext:
        return self.link.jetstream()

    def provision(self, sites: list[str]) -> None:
        """Create or update the hub's streams and buckets for ``sites``."""
        self.link.call(self._provision(sites), self.timeout_s * 4)

    async def _provision(self, sites: list[str]) -> None:
        await provision_hub(self._js(), sites)

    # --- fleet queries ---------------------------------------------------------------------

    def put_query(self, query: FleetQuery, key: str | None = None) -> str:
        """Store a fleet query (a new key unless given); every targeted site applies it."""
        key = key or new_key(query.text)
        stamped = query.model_copy(update={"updated_at": round(time.time(), 3)})

        async def put() -> None:
            kv = await self._js().key_value(QUERIES_BUCKET)
            await kv.put(key, stamped.encode())

        self.link.call(put(), self.timeout_s)
        return key

    def queries(self) -> dict[str, FleetQuery]:
        """Every fleet query by key."""

        async def read() -> dict[str, FleetQuery]:
            kv = await self._js().key_value(QUERIES_BUCKET)
            out: dict[str, FleetQuery] = {}
            try:
                keys = await kv.keys()
            except Exception:  # nats-py raises NoKeysError for an empty bucket
                return out
            for key in keys:
                entry = await kv.get(key)
                if entry.value:
                    out[key] = FleetQuery.decode(entry.value)
            return out

        return self.link.call(read(), self.timeout_s)

    def query(self, key: str) -> FleetQuery:
        found = self.queries().get(key)
        if found is None:
            raise FleetHubError(f"no fleet query {key!r}")
        return found

    def delete_query(self, key: str) -> None:
        """Remove a fleet query; every site removes it."""
        self.query(key)

        async def delete() -> None:
            kv = await self._js().key_value(QUERIES_BUCKET)
            await kv.delete(key)

        self.link.call(delete(), self.timeout_s)

    # --- reviews, alerts, evidence ---------------------------------------------------------

    def review(self, site: str, alert_id: str, action: str, note: str | None = None, by: str = "hub") -> None:
        """Send a review mark down to the site that raised the alert (stored until it arrives)."""
        data = review_message(alert_id, action, note, by, round(time.time(), 3))

        async def publish() -> None:
            await self._js().publish(reviews_subject(site), data, timeout=self.timeout_s)

        self.link.call(publish(), self.timeout_s)

    def try_query(self, site: str, draft: dict[str, Any], timeout_s: float = 20.0) -> dict[str, Any]:
        """A draft query tried at ``site`` (its agent's ``POST /queries/try`` answer)."""

        async def ask() -> dict[str, Any]:
            client = self.link.client()
            deadline = time.monotonic() + timeout_s
            while True:
                reply = f"{try_reply_prefix(site)}.{uuid.uuid4().hex}"
                subscription = await client.subscribe(reply, max_msgs=1)
                try:
                    await client.flush()
                    await client.publish(try_subject(site), json.dumps(draft).encode(), reply=reply)
                    message = await subscription.next_msg(timeout=max(0.1, deadline - time.monotonic()))
                finally:
                    await subscription.unsubscribe()
                # "no responders" (an empty message with status 503): the site's agent is not
                # connected, or its subscription has not reached the hub yet; ask again until the
                # deadline rather than fail on the first try after a (re)connection
                if not (message.headers and message.headers.get("Status") == NO_RESPONDERS):
                    break
                if time.monotonic() + 0.2 >= deadline:
                    raise FleetHubError(f"no agent at site {site} answers (is it connected?)")
                await asyncio.sleep(0.2)
            answer: dict[str, Any] = json.loads(message.data)
            return answer

        try:
            return self.link.call(ask(), timeout_s + 2.0)
        except FleetHubError:
            raise
        except Exception as exc:
            raise FleetHubError(f"site {site} did not answer the draft: {exc!r}") from exc

    def follow_alerts(self, index: AlertIndex) -> None:
        """Fill ``index`` from the hub's alert stream and keep it up to date (in the background)."""
        self.index = index
        self.link.spawn(follow_stream(self.link, ALERTS_STREAM, "watchword.*.alerts.>", index.add))

    def stored_events(self) -> int:
        """Messages in the hub's alert stream."""

        async def count() -> int:
            info = await self._js().stream_info(ALERTS_STREAM)
            return int(info.state.messages)

        return self.link.call(count(), self.timeout_s)

    def evidence(self, bucket: str, name: str) -> bytes:
        """One evidence file from the hub's mirror of a site's bucket."""
        return self.link.call(read_object(self._js(), bucket, name), self.timeout_s * 2)
