"""FLEET.yaml: the hub's connection, the sites, and the fleet console (``watchword fleet ...``).

Example (configs/fleet.example.yaml)::

    hub:
      url: nats://hub.example.com:4222
      user: hub-admin
      password: ${WATCHWORD_HUB_PASSWORD}
    sites:
      - id: store-12
      - id: warehouse-3
    console:
      host: 0.0.0.0
      port: 8090
      token: ${WATCHWORD_FLEET_TOKEN}
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from agent.api.config import ApiConfig
from agent.config_rules import StrictConfigModel
from agent.config_yaml import ConfigError, parse_yaml_model
from agent.fleet.config import NatsConnectionConfig
from agent.fleet.subjects import HUB_DOMAIN, SITE_ID


class SiteEntry(StrictConfigModel):
    """One site of the fleet: its id (subjects, buckets, its leaf's JetStream domain)."""

    id: str = Field(pattern=SITE_ID)
    name: str | None = Field(default=None, description="shown in the console; default the id")


class FleetFileConfig(StrictConfigModel):
    """The whole FLEET.yaml."""

    hub: NatsConnectionConfig = Field(default_factory=NatsConnectionConfig)
    sites: list[SiteEntry] = Field(min_length=1)
    console: ApiConfig = Field(default_factory=ApiConfig)

    @field_validator("sites")
    @classmethod
    def _unique(cls, sites: list[SiteEntry]) -> list[SiteEntry]:
        ids = [s.id for s in sites]
        if len(set(ids)) != len(ids):
            raise ValueError("a site id is listed twice")
        if HUB_DOMAIN in ids:
            raise ValueError(f"{HUB_DOMAIN!r} is the hub's JetStream domain, not a site id")
        return sites

    @property
    def site_ids(self) -> list[str]:
        return [s.id for s in self.sites]


def load_fleet_config(path: str | Path) -> FleetFileConfig:
    """Read and validate FLEET.yaml; :class:`ConfigError` names each bad key and its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fleet config {path}: {exc.strerror or exc}") from exc
    return parse_yaml_model(FleetFileConfig, text, str(path))
