"""The agent's ``fleet:`` section: its site's NATS server (the leaf node), site id and credentials.

Credentials come from a NATS ``.creds`` file (``creds_file``, or the environment variable
``WATCHWORD_FLEET_CREDS`` naming one), a user and password, or a token; ``password`` and ``token``
also come from ``WATCHWORD_FLEET_PASSWORD`` and ``WATCHWORD_FLEET_TOKEN`` (or ``${VAR}`` in the YAML).
They are secrets: redacted in logs, errors and /health like every other one.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from agent.config_rules import StrictConfigModel
from agent.fleet.subjects import HUB_DOMAIN, SITE_ID

CREDS_ENV = "WATCHWORD_FLEET_CREDS"
PASSWORD_ENV = "WATCHWORD_FLEET_PASSWORD"
TOKEN_ENV = "WATCHWORD_FLEET_TOKEN"


class FleetTlsConfig(StrictConfigModel):
    """TLS to the NATS server: a CA bundle (None: the system's) and an optional client certificate."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> FleetTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def context(self) -> ssl.SSLContext:
        """The client's SSL context."""
        context = ssl.create_default_context(cafile=None if self.ca_file is None else str(self.ca_file))
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


class NatsConnectionConfig(StrictConfigModel):
    """Where and how to connect to a NATS server."""

    url: str = Field(default="nats://127.0.0.1:4222", pattern=r"^(nats|tls)://[^\s]+$")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = Field(default=None, description="a NATS .creds file (JWT and seed)")
    tls: FleetTlsConfig | None = None
    connect_timeout_s: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one_way_in(self) -> NatsConnectionConfig:
        ways = [self.creds_file is not None, self.user is not None, self.token is not None]
        if sum(ways) > 1:
            raise ValueError("give one of creds_file, user (with password) or token")
        if self.password is not None and self.user is None:
            raise ValueError("password needs a user")
        return self

    def connect_options(self) -> dict[str, object]:
        """Keyword arguments of ``nats.connect`` for these credentials (environment included)."""
        options: dict[str, object] = {"servers": [self.url], "connect_timeout": self.connect_timeout_s}
        creds = self.creds_file or (Path(os.environ[CREDS_ENV]) if os.environ.get(CREDS_ENV) else None)
        if creds is not None:
            options["user_credentials"] = str(creds)
        elif self.user is not None:
            options["user"] = self.user
            password = self.password.get_secret_value() if self.password else os.environ.get(PASSWORD_ENV)
            if password is not None:
                options["password"] = password
        else:
            token = self.token.get_secret_value() if self.token else os.environ.get(TOKEN_ENV)
            if token:
                options["token"] = token
        if self.tls is not None or self.url.startswith("tls://"):
            options["tls"] = (self.tls or FleetTlsConfig()).context()
        return options


class FleetConfig(NatsConnectionConfig):
    """The agent's fleet link (absent: no fleet).

    Attributes:
        site: the site id in subjects and bucket names, and the leaf's JetStream domain; default the
            agent's ``site`` when that is a valid id.
        heartbeat_s: seconds between heartbeats on ``watchword.<site>.health``.
        ack_timeout_s: how long a publish waits for JetStream's acknowledgement.
        publish_batch: outbox events published at once, each acknowledged on its own (1: one at a time).
        evidence: upload each alert's evidence files to the object store.
        queries: apply the fleet's standing queries from the KV bucket.
        reviews: apply review marks made at the hub.
        retention_days: how long the leaf keeps alert events and evidence (the hub keeps its own
            copies as long as its streams' limits allow).
    """

    site: str | None = Field(default=None, pattern=SITE_ID)
    heartbeat_s: float = Field(default=2.0, ge=0.2, le=300)
    ack_timeout_s: float = Field(default=5.0, gt=0, le=120)
    publish_batch: int = Field(default=32, ge=1, le=256)
    evidence: bool = True
    queries: bool = True
    reviews: bool = True
    retention_days: float = Field(default=30.0, gt=0, le=3650)

    @model_validator(mode="after")
    def _not_the_hub(self) -> FleetConfig:
        if self.site == HUB_DOMAIN:
            raise ValueError(f"site {HUB_DOMAIN!r} is the hub's JetStream domain; pick another id")
        return self


class FleetBackendConfig(NatsConnectionConfig):
    """``rerank.backend: {type: fleet}``: the LMM on the fleet's workers.

    The connection and ``site`` default to the agent's ``fleet:`` section (agent/config.py copies
    them in); ``timeout_s`` is how long one request may take, a worker's generation included.
    """

    type: Literal["fleet"]
    site: str | None = Field(default=None, pattern=SITE_ID)
    timeout_s: float = Field(60.0, gt=0, le=600, description="per request, seconds")
