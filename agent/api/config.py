"""The ``api:`` section of the agent config."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, model_validator

TOKEN_ENV = "WATCHWORD_API_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiConfig(BaseModel):
    """HTTP API served by ``watchword run``.

    ``token`` (or the environment variable ``WATCHWORD_API_TOKEN``) is the bearer token every
    endpoint but ``/health`` requires. Without one the API may only bind a loopback address.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    host: str = Field("127.0.0.1", description="bind address; loopback by default")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    token: str | None = Field(None, min_length=16, description="bearer token (or $WATCHWORD_API_TOKEN)")
    page_limit: int = Field(500, ge=1, le=10000, description="most alerts one GET /alerts returns")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ApiConfig:
        import os

        if self.enabled and not is_loopback(self.host) and not (self.token or os.environ.get(TOKEN_ENV)):
            raise ValueError(f"binding {self.host} needs a token (api.token or ${TOKEN_ENV})")
        return self
