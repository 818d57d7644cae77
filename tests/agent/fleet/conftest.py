"""Fleet fixtures: a real hub and leaf nodes (Debian's nats-server) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.fleet.hub import FleetHub
from tests.fixtures.nats_fleet import FleetNet, nats_unavailable


@pytest.fixture
def fleet_net(tmp_path: Path) -> Iterator[FleetNet]:
    """A running hub with two leaf nodes, sites ``site-a`` and ``site-b``."""
    reason = nats_unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = FleetNet(tmp_path / "nats", ["site-a", "site-b"])
    try:
        yield net.start()
    finally:
        net.close()


@pytest.fixture
def fleet_hub(fleet_net: FleetNet) -> Iterator[FleetHub]:
    """The hub admin's connection, with the hub's streams provisioned for both sites."""
    with FleetHub(fleet_net.hub_connection()) as hub:
        hub.provision(fleet_net.sites)
        yield hub
