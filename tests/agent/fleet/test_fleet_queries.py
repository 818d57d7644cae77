"""Fleet queries from the hub's KV bucket applied at the sites, through the leaves' mirrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.fleet.hub import FleetHub
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_site
from agent.fleet.queries import FleetQuery, FleetQuerySync
from agent.queries.registry import QueryError, QueryRegistry, QueryUpdate
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import FleetNet


def _texts(registry: QueryRegistry) -> set[str]:
    return {q.text for q in registry.list_queries() if q.fleet_key is not None}


class _Site:
    def __init__(self, net: FleetNet, site: str, folder: Path) -> None:
        self.registry = QueryRegistry(folder / f"{site}.db")
        self.link = NatsLink(net.leaves[site].agent_fleet_config(), site)
        self.link.on_connect.append(lambda: provision_site(self.link.jetstream(), site))
        self.sync = FleetQuerySync(self.link, self.registry, site)

    def start(self) -> _Site:
        self.link.start()
        self.sync.start()
        return self

    def close(self) -> None:
        self.link.close()
        self.registry.close()


def test_queries_reach_the_sites_they_target_and_are_read_only_there(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    a, b = _Site(fleet_net, "site-a", tmp_path), _Site(fleet_net, "site-b", tmp_path)
    local = a.registry.add("a person running")
    a.start()
    b.start()
    try:
        everyone = fleet_hub.put_query(FleetQuery(text="a person falling down", severity="critical"))
        only_b = fleet_hub.put_query(
            FleetQuery(text="someone climbing a fence", sites=["site-b"], cameras=["gate"])
        )
        wait_until(
            lambda: _texts(b.registry) == {"a person falling down", "someone climbing a fence"}, 10, "site-b"
        )
        wait_until(lambda: _texts(a.registry) == {"a person falling down"}, 10, "site-a")
        fence = next(q for q in b.registry.list_queries() if q.fleet_key == only_b)
        assert fence.cameras == ["gate"]
        falling = a.registry.fleet_query(everyone)
        assert (
            falling is not None and falling.severity == "critical" and falling.to_dict()["fleet"] == everyone
        )
        with pytest.raises(QueryError, match="fleet query"):
            a.registry.update(falling.id, QueryUpdate(text="changed here"))
        with pytest.raises(QueryError, match="fleet query"):
            a.registry.remove(falling.id)
        # edits and deletes at the hub follow
        fleet_hub.put_query(FleetQuery(text="someone climbing a fence"), key=only_b)
        wait_until(
            lambda: "someone climbing a fence" in _texts(a.registry), 10, "the widened query at site-a"
        )
        fleet_hub.delete_query(everyone)
        wait_until(
            lambda: "a person falling down" not in _texts(a.registry) | _texts(b.registry), 10, "the delete"
        )
        assert [q.text for q in a.registry.list_queries() if q.fleet_key is None] == [local.text]
    finally:
        a.close()
        b.close()


def test_the_last_synced_set_stays_while_the_hub_is_down_and_a_late_site_gets_them_all(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    fleet_hub.put_query(FleetQuery(text="a person lying on the ground"))
    fleet_hub.put_query(FleetQuery(text="a person falling down"))
    late = _Site(fleet_net, "site-b", tmp_path).start()  # joins after the queries were made
    try:
        wait_until(lambda: len(_texts(late.registry)) == 2, 10, "every fleet query at the late site")
    finally:
        late.close()
    fleet_net.hub.stop()
    restarted = _Site(fleet_net, "site-b", tmp_path).start()  # the agent restarts during the outage
    try:
        wait_until(lambda: restarted.sync.synced, 10, "a pass over the leaf's mirror")
        assert _texts(restarted.registry) == {"a person lying on the ground", "a person falling down"}
    finally:
        restarted.close()


def test_queries_keep_flowing_after_the_site_s_leaf_restarts(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    site = _Site(fleet_net, "site-a", tmp_path).start()
    try:
        fleet_hub.put_query(FleetQuery(text="a person falling down"))
        wait_until(lambda: _texts(site.registry) == {"a person falling down"}, 10, "the first query")
        leaf = fleet_net.leaves["site-a"].server
        leaf.stop()
        leaf.start()
        fleet_net.wait_leaves()
        fleet_hub.put_query(FleetQuery(text="a person lying on the ground"))
        wait_until(lambda: len(_texts(site.registry)) == 2, 30, "the query made after the leaf's restart")
    finally:
        site.close()
