"""The API's request and response models. Requests are strict (unknown fields refused, finite
numbers only); responses document each answer's shape (and the ``id`` from which a client, or
schemathesis's stateful phase, reaches an item again), and FastAPI keeps every answer to it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParameter
from pydantic import BaseModel, ConfigDict, Field

from agent.queries.bounds import (
    CAMERA_ID,
    MAX_CAMERAS_PER_QUERY,
    MAX_COOLDOWN_S,
    MAX_NORMAL_PROMPTS,
    MAX_QUERY_TEXT_CHARS,
)
from agent.zone_names import ZONE_NAME

# SQLite integers are signed 64-bit: a larger id or offset is a 422, not an overflow inside the driver.
SQLITE_MAX_INT = 2**63 - 1

CameraId = Annotated[str, Field(pattern=CAMERA_ID)]
ZoneName = Annotated[str, Field(pattern=ZONE_NAME)]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_TEXT_CHARS)]
DbId = Annotated[int, Field(ge=0, le=SQLITE_MAX_INT)]
# An alert id (a UUID) or a file name in a path: bounded, so that a longer one is a 422.
PathPart = Annotated[str, PathParameter(min_length=1, max_length=128)]


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str = Field(
        min_length=1,
        max_length=MAX_QUERY_TEXT_CHARS,
        description="what to watch for (trimmed; no control characters)",
    )
    enabled: bool = True
    cameras: list[CameraId] | None = Field(
        None, max_length=MAX_CAMERAS_PER_QUERY, description="camera ids; null means every camera"
    )
    threshold: float | None = Field(None, gt=0, lt=1, description="null means automatic")
    severity: str = Field("warning", pattern="^(info|warning|critical)$")
    cooldown_s: float | None = Field(
        None, ge=0, le=MAX_COOLDOWN_S, description="seconds; null uses the agent's alerts.cooldown_s"
    )
    normal_prompts: list[Prompt] | None = Field(None, max_length=MAX_NORMAL_PROMPTS)
    zones: list[ZoneName] | None = Field(
        None, max_length=16, description="zone names (cameras[].zones); null means anywhere"
    )


class QueryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str | None = Field(None, min_length=1, max_length=MAX_QUERY_TEXT_CHARS)
    enabled: bool | None = None
    cameras: list[CameraId] | None = Field(None, max_length=MAX_CAMERAS_PER_QUERY)
    threshold: float | None = Field(None, gt=0, lt=1)
    severity: str | None = Field(None, pattern="^(info|warning|critical)$")
    cooldown_s: float | None = Field(None, ge=0, le=MAX_COOLDOWN_S)
    normal_prompts: list[Prompt] | None = Field(None, max_length=MAX_NORMAL_PROMPTS)
    zones: list[ZoneName] | None = Field(
        None, max_length=16, description="zone names (cameras[].zones); null means anywhere"
    )


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sink: str | None = Field(None, max_length=64, description="only this sink's dead letters")
    event_row: DbId | None = Field(None, description="only this event (with sink)")


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
    zones: list[str] | None = Field(None, description="zone names; null means anywhere in the image")
    created_at: float = Field(description="UNIX seconds")
    updated_at: float = Field(description="UNIX seconds")
    fleet: str | None = Field(
        None, description="a fleet query's key (agent/fleet): read-only here, changed at the hub"
    )
    cue: dict[str, Any] | None = Field(
        None, description="its behaviour-cue mapping, only when pose cues are on"
    )
    warnings: list[str] | None = Field(
        None,
        description="on add and change only: zones it names that no camera has yet (kept; the query "
        "is not sampled until a camera has a zone of that name)",
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
