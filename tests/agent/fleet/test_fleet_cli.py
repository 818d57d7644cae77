"""``watchword fleet query ...`` against a real hub, seen applied at a site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.fleet.hub_config import load_fleet_config
from agent.fleet.link import NatsLink
from agent.fleet.provision import provision_site
from agent.fleet.queries import FleetQuerySync
from agent.queries.registry import QueryRegistry
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import ADMIN_PASSWORD, ADMIN_USER, FleetNet


def _fleet_yaml(net: FleetNet, folder: Path) -> Path:
    path = folder / "fleet.yaml"
    path.write_text(
        f"hub: {{url: '{net.hub_url}', user: {ADMIN_USER}, password: {ADMIN_PASSWORD}}}\n"
        "sites: [{id: site-a}, {id: site-b}]\n"
    )
    return path


def test_fleet_query_commands_reach_the_site(
    fleet_net: FleetNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _fleet_yaml(fleet_net, tmp_path)
    registry = QueryRegistry(tmp_path / "site-a.db")
    link = NatsLink(fleet_net.leaves["site-a"].agent_fleet_config(), "site-a")
    link.on_connect.append(lambda: provision_site(link.jetstream(), "site-a"))
    sync = FleetQuerySync(link, registry, "site-a")
    link.start()
    sync.start()
    try:
        assert (
            main(
                [
                    "fleet",
                    "query",
                    "add",
                    "a person falling down",
                    "--severity",
                    "critical",
                    "--config",
                    str(config),
                ]
            )
            == 0
        )
        key = capsys.readouterr().out.split()[3].rstrip(":")
        wait_until(lambda: registry.fleet_query(key) is not None, 10, "the query at site-a")
        assert main(["fleet", "query", "list", "--json", "--config", str(config)]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed[key]["text"] == "a person falling down" and listed[key]["severity"] == "critical"
        assert main(["fleet", "query", "disable", key, "--config", str(config)]) == 0
        wait_until(lambda: not registry.fleet_query(key).enabled, 10, "disabled at site-a")  # type: ignore[union-attr]
        assert main(["fleet", "query", "edit", key, "--sites", "site-b", "--config", str(config)]) == 0
        wait_until(lambda: registry.fleet_query(key) is None, 10, "gone from site-a (targets site-b)")
        assert (
            main(
                [
                    "fleet",
                    "query",
                    "edit",
                    key,
                    "--all-sites",
                    "--text",
                    "a person lying down",
                    "--config",
                    str(config),
                ]
            )
            == 0
        )
        wait_until(
            lambda: getattr(registry.fleet_query(key), "text", None) == "a person lying down", 10, "back"
        )
        assert main(["fleet", "query", "rm", key, "--config", str(config)]) == 0
        wait_until(lambda: registry.fleet_query(key) is None, 10, "removed at site-a")
        assert main(["fleet", "query", "edit", key, "--text", "x", "--config", str(config)]) == 1
        assert main(["fleet", "query", "add", "x y", "--sites", "site-z", "--config", str(config)]) == 2
    finally:
        link.close()
        registry.close()


def test_fleet_yaml_is_strict(tmp_path: Path) -> None:
    from agent.config_yaml import ConfigError

    path = tmp_path / "fleet.yaml"
    path.write_text("sites: [{id: hub}]\n")
    with pytest.raises(ConfigError, match="hub"):
        load_fleet_config(path)
    path.write_text("sites: [{id: a}]\nhub: {url: 'nats://x:4222', pasword: y}\n")
    with pytest.raises(ConfigError, match="pasword"):
        load_fleet_config(path)
