"""What the console's routes use, filled in by the agent (any part may be missing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Path as PathParameter
from pydantic import BaseModel, ConfigDict, Field

from agent.cameras.media import MediaFolders
from agent.cameras.store import CameraStore
from agent.console.events import EventHub
from agent.console.live import LiveFrames
from agent.console.reviews import ReviewStore
from agent.console.session import SessionStore
from agent.queries.bounds import CAMERA_ID
from agent.search.index import TrackIndex
from agent.search.scorer import TextScorer
from agent.sources.config import CameraConfig

# Path parts, bounded so that a malformed one is a 422 (the schema says so) rather than a lookup.
CameraId = Annotated[str, PathParameter(pattern=CAMERA_ID)]
AlertId = Annotated[str, PathParameter(min_length=1, max_length=128, description="an alert id (a UUID)")]


SEARCH_OFF = (
    "Search and try-before-you-save compare your words with what the cameras saw, which needs a CLIP "
    "model. This agent runs without one (behaviour cues only). To turn them on, set matching.embedder "
    "in the config (see the README's CLIP section) and restart the agent."
)


class ErrorBody(BaseModel):
    detail: Any


# --- what the routes answer, as response models (see agent.api.models) -----------------------


class SessionState(BaseModel):
    token_required: bool = Field(description="whether signing in is needed at all")
    signed_in: bool


class CapabilitiesOut(BaseModel):
    search: bool = Field(description="search and try-before-you-save (they need a CLIP model)")
    search_reason: str | None = Field(description="why search is off and how to turn it on")
    live: bool
    reviews: bool
    default_threshold: float = Field(description="the threshold of queries set to automatic")


class SignedOut(BaseModel):
    signed_in: bool


class ReviewOut(BaseModel):
    """An alert's review marks."""

    model_config = ConfigDict(extra="allow")

    state: str = Field(description="new, acknowledged or resolved")
    verdict: str | None = Field(description="true, false or null")
    note: str | None
    history: list[dict[str, Any]]
    updated_at: float | None = Field(description="UNIX seconds")


class CameraOut(BaseModel):
    """A camera as the API shows it: the fields of a YAML camera entry, the URI without its password."""

    model_config = ConfigDict(extra="allow")

    id: str
    uri: str = Field(description="credentials redacted (rtsp://user:***@host/...)")
    enabled: bool
    has_credentials: bool
    status: dict[str, Any] | None = Field(None, description="the live state; in lists and GET only")


class ProbeOut(BaseModel):
    ok: bool
    snapshot: str | None = Field(description="a data:image/jpeg;base64 URL, or null")
    width: int | None = Field(description="pixels")
    height: int | None = Field(description="pixels")
    error: str | None = Field(description="why there is no snapshot, credentials redacted")
    seconds: float


class TrackHitOut(BaseModel):
    key: int
    camera: str
    track_id: int
    first_seen: float = Field(description="UNIX seconds")
    last_seen: float = Field(description="UNIX seconds")
    score: float = Field(description="the live matcher's calibrated probability")
    thumbnail: str = Field(description="the path of the track's JPEG thumbnail")
    foot: list[float] | None = Field(
        None, description="where the person stood in the view that scored: [x, y], fractions of the image"
    )


ZONES_APPLIED = (
    "the zones applied: only tracks seen with their feet in one of them, on a camera that has it, "
    "count (scored by the views taken there); null: anywhere"
)
ZONE_WARNINGS = "zones named that no camera has (nothing can be found in them)"


class SearchOut(BaseModel):
    text: str
    results: list[TrackHitOut]
    zones: list[str] | None = Field(None, description=ZONES_APPLIED)
    warnings: list[str] | None = Field(None, description=ZONE_WARNINGS)


class TriedTrack(TrackHitOut):
    would_alert: bool


class TryOut(BaseModel):
    text: str
    tracks: int
    footage_hours: float
    footage_too_short: bool = Field(
        description="the footage is too short to tell the rate asked (under one alert's worth at it)"
    )
    footage_needed_hours: float = Field(description="footage needed to tell the rate asked")
    threshold: float
    would_alert: int
    suggested_threshold: float | None
    alerts_per_hour: float
    cameras: dict[str, list[TriedTrack]]
    zones: list[str] | None = Field(None, description=ZONES_APPLIED)
    warnings: list[str] | None = Field(None, description=ZONE_WARNINGS)


def unprocessable(message: str) -> Any:
    """A 422 in the shape of pydantic's validation errors (what the schema documents for 422)."""
    from fastapi import HTTPException

    return HTTPException(422, detail=[{"loc": ["body"], "msg": message, "type": "value_error"}])


# What the console's routes may answer besides success, documented so the schema matches the server.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "a malformed request: a body that is not UTF-8 or a Content-Length that is "
        "not a number",
        "model": ErrorBody,
    },
    401: {"description": "missing or wrong bearer token or session", "model": ErrorBody},
    403: {
        "description": "a session request that changes something without its CSRF token",
        "model": ErrorBody,
    },
    404: {"description": "no such item, or the part is off", "model": ErrorBody},
    413: {"description": "request body too large", "model": ErrorBody},
    429: {
        "description": "too many failed authentications from this address (see Retry-After)",
        "model": ErrorBody,
    },
}


@dataclass
class ConsoleServices:
    """The console's parts.

    Attributes:
        sessions: cookie sessions; None when the API has no token (nothing to sign in with).
        hub: the push channel.
        live: each camera's latest analysed frame.
        reviews: alert marks and delivery status.
        cameras: the camera table; None when cameras are not kept in the database.
        index: recent tracks for search; None without a CLIP model.
        scorer: the live matcher's calibrated score for any text; None without a CLIP model.
        probe: opens a camera once: ``ok``, ``jpeg`` (bytes or None), ``width``, ``height``,
            ``error`` (None or why, credentials redacted), ``seconds``.
        media: the folders whose video files a camera given through the API may read.
        pages: whether to serve the HTML console at ``/``.
        default_threshold: the threshold of queries set to automatic.
        thresholds: query id -> its own threshold (None: automatic).
    """

    sessions: SessionStore | None
    hub: EventHub | None = None
    live: LiveFrames | None = None
    reviews: ReviewStore | None = None
    cameras: CameraStore | None = None
    index: TrackIndex | None = None
    scorer: TextScorer | None = None
    probe: Callable[[CameraConfig], dict[str, Any]] | None = None
    media: MediaFolders = field(default_factory=lambda: MediaFolders(()))
    pages: bool = True
    default_threshold: float = 0.6
    thresholds: Callable[[], dict[int, float | None]] | None = None

    def query_threshold(self, query_id: Any) -> float | None:
        """The effective threshold of a query: its own, or the automatic default; None if unknown."""
        if self.thresholds is None or not isinstance(query_id, int):
            return None
        known = self.thresholds()
        if query_id not in known:
            return None
        own = known[query_id]
        return self.default_threshold if own is None else own
