"""The fleet's JetStream streams and buckets, created (or brought up to date) idempotently.

:func:`provision_site` runs in the agent against its leaf node at every connection;
:func:`provision_hub` runs in the fleet commands against the hub with the list of sites. Both only
add or update: nothing is deleted, so running them again, or from several processes, is safe.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    KeyValueConfig,
    ObjectStoreConfig,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import BadRequestError, NotFoundError

from agent.fleet.subjects import (
    ALERTS_STREAM,
    HUB_DOMAIN,
    MAX_ALERT_BYTES,
    QUERIES_BUCKET,
    REVIEWS_STREAM,
    domain_api,
    evidence_bucket,
    hub_reviews_stream,
    reviews_subject,
    site_alerts,
    sync_prefix,
)

log = logging.getLogger(__name__)

# JetStream drops a repeated message id within this window: an event resent after a lost ack or a
# SIGKILL is stored once (the outbox resends at its next start, which may be hours later).
DUPLICATE_WINDOW_S = 24 * 3600.0
QUERY_HISTORY = 5


def _external(domain: str, site: str) -> ExternalStream:
    return ExternalStream(api=domain_api(domain), deliver=sync_prefix(site))


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it to ``config`` when it exists."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("fleet: stream %s created", config.name)
        return
    if config.mirror is not None:  # JetStream never updates a mirror's configuration
        return
    try:
        await js.update_stream(config)
    except BadRequestError as exc:  # a change JetStream refuses (storage type, mirror): keep it
        log.warning("fleet: stream %s kept as it is: %s", config.name, exc.description)


def _mirror(name: str, domain: str, site: str, *, kv: bool = False) -> StreamConfig:
    return StreamConfig(
        name=name,
        mirror=StreamSource(name=name, external=_external(domain, site)),
        storage=StorageType.FILE,
        max_msgs_per_subject=QUERY_HISTORY if kv else -1,
        allow_rollup_hdrs=True,
        deny_delete=kv,
    )


async def provision_site(
    js: JetStreamContext, site: str, *, evidence: bool = True, retention_s: float | None = None
) -> None:
    """A site's streams at its leaf node: alerts, evidence (both kept ``retention_s`` seconds, None:
    until the disk limit), and the mirrors of queries and reviews."""
    await ensure_stream(
        js,
        StreamConfig(
            name=ALERTS_STREAM,
            subjects=[site_alerts(site)],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_msg_size=MAX_ALERT_BYTES,
            discard=DiscardPolicy.OLD,
            max_age=retention_s,
        ),
    )
    if evidence:
        try:
            await js.object_store(evidence_bucket(site))
        except Exception:  # nats-py raises its own NotFoundError or BucketNotFoundError
            await js.create_object_store(evidence_bucket(site), ObjectStoreConfig(storage=StorageType.FILE))
    await ensure_stream(js, _mirror(f"KV_{QUERIES_BUCKET}", HUB_DOMAIN, site, kv=True))
    mirror = _mirror(REVIEWS_STREAM, HUB_DOMAIN, site)
    mirror.mirror = StreamSource(name=hub_reviews_stream(site), external=_external(HUB_DOMAIN, site))
    await ensure_stream(js, mirror)


async def provision_hub(js: JetStreamContext, sites: list[str]) -> None:
    """The hub's streams for ``sites``: the alerts sourced from every site, each site's evidence
    mirror and review stream, and the fleet-query bucket."""
    try:
        await js.key_value(QUERIES_BUCKET)
    except Exception:
        await js.create_key_value(
            KeyValueConfig(bucket=QUERIES_BUCKET, history=QUERY_HISTORY, storage=StorageType.FILE)
        )
    sources = [
        StreamSource(name=ALERTS_STREAM, filter_subject=site_alerts(site), external=_external(site, site))
        for site in sorted(sites)
    ]
    await ensure_stream(js, StreamConfig(name=ALERTS_STREAM, sources=sources, storage=StorageType.FILE))
    for site in sites:
        bucket = f"OBJ_{evidence_bucket(site)}"
        await ensure_stream(js, _mirror(bucket, site, site))
        await ensure_stream(
            js,
            StreamConfig(
                name=hub_reviews_stream(site),
                subjects=[reviews_subject(site)],
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
            ),
        )
