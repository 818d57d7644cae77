"""The example fleet configs are what the code writes and what the loaders accept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.fleet.hub_config import load_fleet_config
from agent.fleet.natsconf import SiteUser, hub_config, leaf_config
from tests.fixtures.nats_fleet import NATS_SERVER

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
HEADER = "# Written by agent.fleet.natsconf (see the README's Fleet section). Change every password.\n"


def test_the_example_server_configs_are_natsconf_s_and_nats_server_accepts_them() -> None:
    hub = HEADER + hub_config(
        port=4222,
        leaf_port=7422,
        store_dir=Path("/data"),
        admin_user="hub-admin",
        admin_password="CHANGE-ME-hub-admin",
        sites=[SiteUser("store-12", "CHANGE-ME-store-12"), SiteUser("warehouse-3", "CHANGE-ME-warehouse-3")],
        monitor_port=8222,
    )
    leaf = HEADER + leaf_config(
        site="store-12",
        port=4222,
        store_dir=Path("/var/lib/nats"),
        hub_leaf_url="nats-leaf://hub.example.com:7422",
        site_password="CHANGE-ME-store-12",
        agent_user="agent",
        agent_password="CHANGE-ME-agent",
    )
    assert (CONFIGS / "fleet" / "hub.conf").read_text() == hub
    assert (CONFIGS / "fleet" / "leaf-store-12.conf").read_text() == leaf
    if NATS_SERVER.is_file():
        for name in ("hub.conf", "leaf-store-12.conf"):
            check = subprocess.run(
                [str(NATS_SERVER), "-t", "-c", str(CONFIGS / "fleet" / name)], capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr


def test_the_example_fleet_yaml_and_the_site_s_fleet_section_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHWORD_HUB_PASSWORD", "hub-secret")
    config = load_fleet_config(CONFIGS / "fleet.example.yaml")
    assert config.site_ids == ["store-12", "warehouse-3"]
    site = parse_config(
        "site: store-12\ncameras: [{id: a, uri: 'test://'}]\n"
        "fleet: {user: agent, password: s3cret, heartbeat_s: 2}\n"
    )
    assert site.fleet is not None and site.fleet.url == "nats://127.0.0.1:4222"
    assert "s3cret" not in repr(site.fleet)


def test_the_fleet_section_refuses_what_would_break_at_start() -> None:
    from agent.config import ConfigError

    base = "cameras: [{id: a, uri: 'test://'}]\n"
    with pytest.raises(ConfigError, match=r"fleet\.site is needed"):
        parse_config("site: store.12\n" + base + "fleet: {}\n")
    with pytest.raises(ConfigError, match="named 'fleet'"):
        parse_config(base + "fleet: {}\nalerts: {sinks: [{type: jsonl, name: fleet, path: x.jsonl}]}\n")
    with pytest.raises(ConfigError, match="hub"):
        parse_config(base + "fleet: {site: hub}\n")
    assert parse_config("site: store.12\n" + base + "fleet: {site: store-12}\n").fleet is not None
