"""The agent's fleet parts, wired once: the link, the sink, the heartbeat, fleet queries, reviews.

:class:`FleetRuntime` is built before the alert manager (its sink joins the outbox's sinks) and
started with the agent; ``service.py`` holds only those three calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.alerts.config import RetryConfig
from agent.alerts.sinks.base import Sink
from agent.fleet.config import FleetConfig
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_site
from agent.fleet.queries import FleetQuerySync
from agent.fleet.reviews import MarkFunction, ReviewSync
from agent.fleet.sink import FleetSink
from agent.fleet.subjects import health_subject
from agent.fleet.trial import ApiEndpoint, TryResponder
from agent.queries.registry import QueryRegistry
from agent.redact import redact_text

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger(__name__)

SINK_NAME = "fleet"
# The outbox's backoff for the fleet sink: short, since the leaf is on loopback.
SINK_RETRY = RetryConfig(initial_s=0.2, max_s=5.0)


def fleet_site(config: FleetConfig, agent_site: str) -> str:
    """The site id: ``fleet.site``, else the agent's ``site``."""
    return config.site or agent_site


class FleetRuntime:
    """The fleet link of one agent.

    Args:
        config: the ``fleet:`` section.
        site: the site id.
        evidence_dir: the agent's evidence folder.
    """

    def __init__(self, config: FleetConfig, site: str, evidence_dir: Path) -> None:
        self.config, self.site = config, site
        self.link = NatsLink(config, f"watchword-{site}")
        self.link.on_connect.append(self._provision)
        self.sink = FleetSink(
            SINK_NAME,
            self.link,
            site,
            evidence_dir=evidence_dir if config.evidence else None,
            ack_timeout_s=config.ack_timeout_s,
            batch_size=config.publish_batch,
        )
        self.queries: FleetQuerySync | None = None
        self.reviews: ReviewSync | None = None
        self.heartbeats = 0
        self.provisioned = False
        self._registry: QueryRegistry | None = None

    @classmethod
    def for_agent(cls, config: AgentConfig) -> FleetRuntime:
        """The runtime of an agent config with a ``fleet:`` section."""
        assert config.fleet is not None
        return cls(config.fleet, fleet_site(config.fleet, config.site), config.alerts.evidence_dir)

    def sinks(self) -> list[tuple[Sink, RetryConfig]]:
        """The fleet sink with its retry policy, for the alert manager."""
        return [(self.sink, SINK_RETRY)]

    async def _provision(self) -> None:
        retention_s = self.config.retention_days * 86400.0
        await provision_site(
            self.link.jetstream(), self.site, evidence=self.config.evidence, retention_s=retention_s
        )
        self.provisioned = True

    def start(
        self,
        registry: QueryRegistry,
        health: Callable[[], dict[str, Any]],
        mark: Callable[[], MarkFunction | None],
        api: ApiEndpoint | None = None,
    ) -> None:
        """Connect (in the background), and start the heartbeat, the query and review syncs and the
        answers to the hub's query drafts (through the agent's API, ``api``)."""
        log.info("fleet: site %s on %s", self.site, self.link.shown_url)
        self._registry = registry
        self.link.start()
        if api is not None:
            TryResponder(self.link, self.site, api).start()
        if self.config.queries:
            self.queries = FleetQuerySync(self.link, registry, self.site)
            self.queries.start()
        if self.config.reviews:
            self.reviews = ReviewSync(self.link, self.site, mark)
            self.reviews.start()
        self.link.spawn(self._heartbeat(health))

    async def _heartbeat(self, health: Callable[[], dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.link.connected:
                try:
                    document = await loop.run_in_executor(None, health)
                    body = {"site": self.site, "sent_at": round(time.time(), 3), "health": document}
                    data = json.dumps(body, default=str).encode("utf-8")
                    await self.link.client().publish(health_subject(self.site), data)
                    self.heartbeats += 1
                except Exception as exc:  # never stop beating for one bad turn
                    log.debug("fleet heartbeat: %s", redact_text(repr(exc)))
            await asyncio.sleep(self.config.heartbeat_s)

    def status(self) -> dict[str, Any]:
        """The fleet part of /health."""
        return {
            "site": self.site,
            "url": self.link.shown_url,
            "connected": self.link.connected,
            "problem": None if self.link.connected else self.link.last_problem,
            "heartbeats": self.heartbeats,
            "queries_synced": None if self.queries is None else self.queries.synced,
            "reviews_applied": None if self.reviews is None else self.reviews.applied,
            "queries": [] if self._registry is None else self._fleet_keys(self._registry),
        }

    @staticmethod
    def _fleet_keys(registry: QueryRegistry) -> list[str]:
        return sorted(q.fleet_key for q in registry.list_queries() if q.fleet_key is not None)

    def close(self, timeout_s: float = 1.0) -> None:
        self.link.close(timeout_s)
