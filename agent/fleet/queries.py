"""Fleet standing queries: one JSON value per query in the KV bucket ``watchword-queries``.

The hub writes them (``watchword fleet query ...``); every site's leaf mirrors the bucket, and the
agent watches its local mirror (:class:`FleetQuerySync`), applying each put or delete to its own
registry as a local edit would be (the matcher re-reads the registry within ``matching.refresh_s``),
with the query marked as a fleet query (read-only at the site). While the uplink is down the leaf's
mirror, and the registry, keep the last synced set; a site that joins later receives them all.

A query targets every site (``sites`` null) or the listed ones, and every camera or the listed ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import Field, ValidationError

from agent.config_rules import StrictConfigModel
from agent.fleet.link import NatsLink
from agent.fleet.subjects import QUERIES_BUCKET, SITE_ID
from agent.queries.bounds import MAX_QUERY_TEXT_CHARS
from agent.queries.registry import QueryError, QueryRegistry, QueryUpdate, Severity

log = logging.getLogger(__name__)

KEY = r"^[A-Za-z0-9_-]{1,64}$"


class FleetQuery(StrictConfigModel):
    """One fleet query as stored in the bucket (the key is its id)."""

    text: str = Field(min_length=1, max_length=MAX_QUERY_TEXT_CHARS)
    severity: Severity = "warning"
    enabled: bool = True
    sites: list[str] | None = Field(default=None, description="None: every site")
    cameras: list[str] | None = Field(default=None, description="None: every camera of a site")
    threshold: float | None = Field(default=None, ge=-1, le=1)
    cooldown_s: float | None = Field(default=None, ge=0)
    normal_prompts: list[str] | None = None
    updated_at: float = 0.0

    def targets(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def encode(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> FleetQuery:
        return cls.model_validate(json.loads(data.decode("utf-8")))


def new_key(text: str) -> str:
    """A new query key: a slug of the text and a short random suffix (``person-falling-3f2a9c``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "query"
    return f"{slug}-{uuid.uuid4().hex[:6]}"


def check_sites(sites: list[str] | None) -> list[str] | None:
    for site in sites or []:
        if re.match(SITE_ID, site) is None:
            raise ValueError(f"{site!r} is not a site id")
    return sites


def apply_fleet_query(registry: QueryRegistry, site: str, key: str, query: FleetQuery | None) -> str:
    """Bring the registry's fleet query ``key`` to ``query`` (None: deleted) for this site.

    Returns what was done: ``added``, ``updated``, ``removed`` or ``unchanged``.
    """
    existing = registry.fleet_query(key)
    if query is None or not query.targets(site):
        if existing is None:
            return "unchanged"
        registry.remove(existing.id, fleet=True)
        return "removed"
    if existing is None:
        registry.add(
            query.text,
            cameras=query.cameras,
            threshold=query.threshold,
            severity=query.severity,
            cooldown_s=query.cooldown_s,
            normal_prompts=query.normal_prompts,
            enabled=query.enabled,
            fleet_key=key,
        )
        return "added"
    change = QueryUpdate(
        text=query.text,
        enabled=query.enabled,
        cameras=query.cameras,
        clear_cameras=query.cameras is None,
        threshold=query.threshold,
        clear_threshold=query.threshold is None,
        severity=query.severity,
        cooldown_s=query.cooldown_s,
        clear_cooldown=query.cooldown_s is None,
        normal_prompts=query.normal_prompts,
        clear_normal_prompts=query.normal_prompts is None,
    )
    before = existing.to_dict()
    after = registry.update(existing.id, change, fleet=True).to_dict()
    same = all(before[k] == after[k] for k in before if k != "updated_at")
    return "unchanged" if same else "updated"


class FleetQuerySync:
    """Watches the leaf's mirror of the fleet-query bucket and applies it to the registry.

    ``applied`` is called with (key, action, UNIX seconds) after each change (the bench and the
    tests time propagation with it).
    """

    def __init__(
        self,
        link: NatsLink,
        registry: QueryRegistry,
        site: str,
        *,
        applied: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.link, self.registry, self.site = link, registry, site
        self.applied = applied
        self.synced = False  # the first full pass over the bucket is done
        self._task: Any = None

    def start(self) -> None:
        self._task = self.link.spawn(self._watch_forever())

    async def _watch_forever(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bucket not mirrored yet, connection lost: keep the set, retry
                log.debug("fleet queries: %r; watching again", exc)
                await asyncio.sleep(0.5)

    async def _watch(self) -> None:
        while not self.link.connected:
            await asyncio.sleep(0.2)
        generation = self.link.connections
        kv = await self.link.jetstream().key_value(QUERIES_BUCKET)
        watcher = await kv.watchall()
        seen: set[str] = set()
        initial = True
        while True:
            try:
                entry = await watcher.updates(timeout=1.0)
            except asyncio.TimeoutError:
                if self.link.connections != generation:  # a reconnection: watch anew (idempotent)
                    await watcher.stop()
                    return
                continue
            if entry is None:  # the end of the current values: drop fleet queries no longer there
                if initial:
                    self._drop_missing(seen)
                    initial = False
                    self.synced = True
                continue
            seen.add(entry.key)
            deleted = entry.operation in ("DEL", "PURGE") or not entry.value
            self._apply(entry.key, None if deleted else entry.value)

    def _apply(self, key: str, value: bytes | None) -> None:
        query: FleetQuery | None = None
        if value is not None:
            try:
                query = FleetQuery.decode(value)
            except (ValidationError, ValueError) as exc:
                log.warning("fleet query %s: not applied, its value is not valid: %s", key, exc)
                return
        try:
            action = apply_fleet_query(self.registry, self.site, key, query)
        except QueryError as exc:
            log.warning("fleet query %s: not applied: %s", key, exc)
            return
        if action != "unchanged":
            log.info("fleet query %s: %s", key, action)
        if self.applied is not None:
            self.applied(key, action, time.time())

    def _drop_missing(self, present: set[str]) -> None:
        for query in self.registry.list_queries():
            if query.fleet_key is not None and query.fleet_key not in present:
                self.registry.remove(query.id, fleet=True)
                log.info("fleet query %s: removed (no longer in the fleet)", query.fleet_key)
