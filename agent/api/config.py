"""The ``api:`` section of the agent config."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from pydantic import Field, IPvAnyNetwork, model_validator

from agent.api.lockout import AuthLockoutConfig
from agent.config_rules import StrictConfigModel

log = logging.getLogger(__name__)

TOKEN_ENV = "WATCHWORD_API_TOKEN"
MIN_TOKEN_CHARS = 16


def environment_token() -> str | None:
    """``$WATCHWORD_API_TOKEN``: None when unset or empty (an empty one is warned about, not used).

    Raises:
        ValueError: the token is shorter than :data:`MIN_TOKEN_CHARS` (the same rule as ``api.token``).
    """
    value = os.environ.get(TOKEN_ENV)
    if value is None:
        return None
    if not value.strip():
        log.warning("$%s is set but empty: treated as unset (no token)", TOKEN_ENV)
        return None
    if len(value) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"${TOKEN_ENV} has {len(value)} characters; a token needs at least {MIN_TOKEN_CHARS}"
        )
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiConfig(StrictConfigModel):
    """HTTP API served by ``watchword run``.

    ``token`` (or the environment variable ``WATCHWORD_API_TOKEN``) is the bearer token every
    endpoint but ``/health`` requires. Without one the API may only bind a loopback address.

    Limits against guessing and against connections that hold descriptors: ``auth_lockout`` (per
    client, :mod:`agent.api.lockout`), ``request_timeout_s``, ``max_connections`` and
    ``reserved_files`` (:mod:`agent.api.connections`). ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed only from ``trusted_proxies``.
    """

    enabled: bool = False
    host: str = Field("127.0.0.1", description="bind address; loopback by default")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    token: str | None = Field(
        None, min_length=MIN_TOKEN_CHARS, description="bearer token (or $WATCHWORD_API_TOKEN)"
    )
    page_limit: int = Field(500, ge=1, le=10000, description="most alerts one GET /alerts returns")
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, le=64 * 1024**2, description="larger request bodies are refused with 413"
    )

    console: bool = Field(True, description="serve the operator console at / (needs enabled)")
    media_dirs: list[Path] | None = Field(
        None,
        description="folders whose video files a camera added or tested through the API may read; "
        "None: the folder of each file camera and <state_dir>/media",
    )

    auth_lockout: AuthLockoutConfig = Field(
        default_factory=lambda: AuthLockoutConfig(), description="per-client lockout after wrong tokens"
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        max_length=256,
        description="reverse proxies (addresses or networks) whose X-Forwarded-For names the client",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=600, description="a request (head and body) must arrive whole within this, seconds"
    )
    max_connections: int = Field(256, ge=8, le=100_000, description="most API connections open at once")
    reserved_files: int = Field(
        128, ge=16, le=100_000, description="file descriptors the API leaves for the rest of the agent"
    )

    def resolved_token(self) -> str | None:
        """``token``, else a usable ``$WATCHWORD_API_TOKEN``, else None."""
        return self.token or environment_token()

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ApiConfig:
        if not self.enabled:
            return self
        token = self.resolved_token()  # raises for a too-short environment token
        if not is_loopback(self.host) and not token:
            raise ValueError(f"binding {self.host} needs a token (api.token or ${TOKEN_ENV})")
        return self
