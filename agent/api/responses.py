"""What the API's routes answer, as response models: the OpenAPI schema documents each answer's shape
(and the ``id`` from which a client, or schemathesis's stateful phase, reaches the item again), and
FastAPI keeps every answer to it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class QueryOut(BaseModel):
    """A standing query as the API returns it."""

    id: int
    text: str
    enabled: bool
    cameras: list[str] | None = Field(description="camera ids; null means every camera")
    threshold: float | None = Field(description="null means automatic")
    threshold_source: str | None
    severity: str
    cooldown_s: float | None = Field(description="seconds; null uses the agent's alerts.cooldown_s")
    normal_prompts: list[str] | None
    created_at: float = Field(description="UNIX seconds")
    updated_at: float = Field(description="UNIX seconds")
    cue: dict[str, Any] | None = Field(
        None, description="its behaviour-cue mapping, only when pose cues are on"
    )


class AlertsPage(BaseModel):
    alerts: list[dict[str, Any]]
    limit: int
    offset: int


class DeadLettersPage(BaseModel):
    dead_letters: list[dict[str, Any]]
    limit: int
    offset: int


class Queued(BaseModel):
    queued: int = Field(description="dead letters queued for delivery again")


# A file or picture answer, documented as what it is (FastAPI would say JSON).
def binary(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """``responses={...}`` for a 200 whose body is a file of one of ``media_types``."""
    content = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in media_types}
    return {200: {"description": description, "content": content}}
