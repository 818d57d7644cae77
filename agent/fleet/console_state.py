"""What the fleet console shows, rebuilt from JetStream at start and kept live (no state of its own).

Alerts come from the hub's sourced stream (:class:`agent.fleet.hub.AlertIndex`), review marks from
each site's review stream, health from the sites' heartbeats (live only: a site is "silent" when
its last heartbeat is older than ``silent_after_s``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from agent.console.reviews import _STATE, _VERDICT
from agent.fleet.hub import AlertIndex, FleetHub, follow_stream
from agent.fleet.hub_config import FleetFileConfig
from agent.fleet.subjects import health_subject, hub_reviews_stream, reviews_subject

log = logging.getLogger(__name__)


class FleetConsoleState:
    """The hub's view of every site (see the module doc)."""

    def __init__(self, config: FleetFileConfig, *, silent_after_s: float = 6.0) -> None:
        self.config = config
        self.silent_after_s = silent_after_s
        self.hub = FleetHub(config.hub)
        self.alerts = AlertIndex()
        self.health: dict[str, dict[str, Any]] = {}
        self.reviews: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.hub.connect()
        self.hub.provision(self.config.site_ids)
        self.hub.follow_alerts(self.alerts)
        self.hub.link.call(self._subscribe(), self.hub.timeout_s)
        for site in self.config.site_ids:
            self.hub.link.spawn(
                follow_stream(self.hub.link, hub_reviews_stream(site), reviews_subject(site), self._marked)
            )

    def close(self) -> None:
        self.hub.close()

    async def _subscribe(self) -> None:
        client = self.hub.link.client()
        for site in self.config.site_ids:  # one per site: the hub forwards only a site's own subjects
            await client.subscribe(health_subject(site), cb=self._heartbeat)

    async def _heartbeat(self, message: Any) -> None:
        try:
            body = json.loads(message.data)
        except ValueError:
            return
        site = message.subject.split(".")[1]
        with self._lock:
            self.health[site] = {"received_at": time.time(), "health": body.get("health") or {}}

    def _marked(self, subject: str, data: bytes) -> None:
        try:
            self._mark(json.loads(data))
        except ValueError:
            log.warning("fleet console: %s: a review mark that is not JSON", subject)

    def _mark(self, mark: dict[str, Any]) -> None:
        action = str(mark.get("action"))
        with self._lock:
            review = self.reviews.setdefault(
                str(mark.get("alert_id")), {"state": "new", "verdict": None, "note": None, "history": []}
            )
            if action in _STATE:
                review["state"] = _STATE[action]
            elif action in _VERDICT:
                review["verdict"] = _VERDICT[action]
                if review["state"] == "new":
                    review["state"] = "acknowledged"
            if mark.get("note") is not None:
                review["note"] = mark["note"]
            review["history"].append({k: mark.get(k) for k in ("action", "at", "by", "note")})

    # --- what the routes answer -------------------------------------------------------------

    def sites(self) -> list[dict[str, Any]]:
        """Every site: name, silent or not, seconds since its heartbeat, its cameras and status."""
        now = time.time()
        out = []
        for entry in self.config.sites:
            with self._lock:
                beat = self.health.get(entry.id)
            health = beat["health"] if beat else {}
            age = None if beat is None else now - beat["received_at"]
            cameras = health.get("cameras") or {}
            out.append(
                {
                    "id": entry.id,
                    "name": entry.name or entry.id,
                    "online": age is not None and age < self.silent_after_s,
                    "heartbeat_age_s": None if age is None else round(age, 1),
                    "status": health.get("status"),
                    "problems": health.get("problems") or [],
                    "cameras": {cid: (c or {}).get("state") for cid, c in cameras.items()}
                    if isinstance(cameras, dict)
                    else {},
                }
            )
        return out

    def review_of(self, alert_id: str) -> dict[str, Any]:
        with self._lock:
            review = self.reviews.get(alert_id)
            return dict(review) if review else {"state": "new", "verdict": None, "note": None, "history": []}

    def alert_list(self, state: str | None = None, **filters: str | None) -> list[dict[str, Any]]:
        rows = []
        for alert in self.alerts.list(**filters):
            review = self.review_of(str(alert.get("alert_id")))
            if state is not None and review["state"] != state:
                continue
            rows.append({**alert, "review": review})
        return rows

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self.alerts.lock:
            alert = self.alerts.alerts.get(alert_id)
        return None if alert is None else {**alert, "review": self.review_of(alert_id)}
