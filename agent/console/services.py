"""What the console's routes use, filled in by the agent (any part may be missing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agent.cameras.media import MediaFolders
from agent.cameras.store import CameraStore
from agent.config import CameraConfig
from agent.console.events import EventHub
from agent.console.live import LiveFrames
from agent.console.reviews import ReviewStore
from agent.console.session import SessionStore
from agent.search.index import TrackIndex
from agent.search.scorer import TextScorer


class ErrorBody(BaseModel):
    detail: Any


def unprocessable(message: str) -> Any:
    """A 422 in the shape of pydantic's validation errors (what the schema documents for 422)."""
    from fastapi import HTTPException

    return HTTPException(422, detail=[{"loc": ["body"], "msg": message, "type": "value_error"}])


# What the console's routes may answer besides success, documented so the schema matches the server.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
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
