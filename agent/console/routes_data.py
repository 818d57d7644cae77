"""Console data routes: cameras (CRUD, test connection), search over recent tracks, trying a query."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.api.models import binary
from agent.cameras.store import CameraError, CameraNotFoundError, redacted
from agent.console.services import (
    ERROR_RESPONSES,
    SEARCH_OFF,
    CameraId,
    CameraOut,
    ConsoleServices,
    ProbeOut,
    SearchOut,
    TryOut,
    unprocessable,
)
from agent.queries.bounds import MAX_QUERY_TEXT_CHARS
from agent.search.scorer import threshold_for_rate
from agent.sources.config import CameraConfig
from agent.uri_rules import camera_uri_problem
from agent.zone_names import ZONE_NAME, unknown_zone_warnings
from agent.zones import ZoneBook

if TYPE_CHECKING:
    from agent.search.index import FootFilter

ZoneName = Annotated[str, Field(pattern=ZONE_NAME)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SEARCH_TEXT = 500


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """UNIX seconds from ``1h``/``30m``/``2d`` (that long ago) or a number of UNIX seconds."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"since must be like 1h, 30m, 2d or UNIX seconds, got {value!r}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("since must be a finite number")
    return seconds


class TryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_QUERY_TEXT_CHARS)  # a draft of a standing query
    normal_prompts: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_TEXT_CHARS)]] | None = Field(
        None, max_length=64
    )
    cameras: list[str] | None = Field(None, max_length=256)
    threshold: float | None = Field(None, gt=0, lt=1)
    alerts_per_hour: float = Field(2.0, gt=0, le=3600)
    hours: float = Field(1.0, gt=0, le=24)
    per_camera: int = Field(8, ge=1, le=100)
    zones: list[ZoneName] | None = Field(
        None, max_length=16, description="only tracks seen with their feet in one of these zones count"
    )


class CameraTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="test a stored camera (its stored URI and credentials)")
    uri: str | None = Field(None, max_length=2048, description="or test this URI")


def add_data_routes(
    app: FastAPI,
    console: ConsoleServices,
    guarded: list[Any],
    camera_status: Callable[[], dict[str, Any]],
    default_threshold: float,
) -> None:
    """Add /cameras, /search and /queries/try to ``app``; ``guarded`` are the API's auth dependencies."""
    router = APIRouter(responses=ERROR_RESPONSES)

    def store() -> Any:
        if console.cameras is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="cameras are not kept in the database")
        return console.cameras

    def with_status(camera: dict[str, Any], statuses: dict[str, Any]) -> dict[str, Any]:
        camera["status"] = statuses.get(
            camera["id"], {"state": "disabled" if not camera["enabled"] else "pending"}
        )
        return camera

    def check_media(uri: Any) -> None:
        """A URI given through the API reads local files only under the media folders (422)."""
        if not isinstance(uri, str) or camera_uri_problem(uri) is not None:
            return  # not a usable URI: the camera's own validation answers (422)
        problem = console.media.problem(uri)
        if problem is not None:
            raise unprocessable(f"uri: {problem}")

    @router.get("/cameras", tags=["cameras"], dependencies=guarded, response_model=list[CameraOut])
    def list_cameras() -> list[dict[str, Any]]:
        """Every camera (credentials redacted) with its live status."""
        statuses = camera_status()
        return [with_status(redacted(c), statuses) for c in store().list_cameras()]

    @router.post(
        "/cameras",
        tags=["cameras"],
        dependencies=guarded,
        status_code=status.HTTP_201_CREATED,
        response_model=CameraOut,
        response_model_exclude_unset=True,
    )
    def add_camera(body: CameraConfig) -> dict[str, Any]:
        """Add a camera (the fields of a YAML camera entry); it starts within a second."""
        try:
            check_media(body.uri)
            return redacted(store().add(body.model_dump()))
        except CameraError as exc:
            raise unprocessable(str(exc)) from exc

    @router.get(
        "/cameras/{camera_id}",
        tags=["cameras"],
        dependencies=guarded,
        response_model=CameraOut,
        response_model_exclude_unset=True,
    )
    def get_camera(camera_id: CameraId) -> dict[str, Any]:
        try:
            return with_status(redacted(store().get(camera_id)), camera_status())
        except CameraNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc

    @router.patch(
        "/cameras/{camera_id}",
        tags=["cameras"],
        dependencies=guarded,
        response_model=CameraOut,
        response_model_exclude_unset=True,
    )
    def update_camera(camera_id: CameraId, body: dict[str, Any]) -> dict[str, Any]:
        """Change fields; a URI left out keeps the stored one (with its credentials)."""
        try:
            check_media(body.get("uri"))
            return redacted(store().update(camera_id, body))
        except CameraNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        except CameraError as exc:
            raise unprocessable(str(exc)) from exc

    @router.delete("/cameras/{camera_id}", tags=["cameras"], dependencies=guarded, status_code=204)
    def delete_camera(camera_id: CameraId) -> None:
        try:
            store().remove(camera_id)
        except CameraNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc

    @router.post("/cameras/test", tags=["cameras"], dependencies=guarded, response_model=ProbeOut)
    def test_camera(body: CameraTest) -> dict[str, Any]:
        """Open the URI once: a snapshot (base64 JPEG) or the error, credentials redacted."""
        if console.probe is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="testing cameras is not available")
        if body.id is not None:
            try:
                camera = store().get(body.id)  # stored: checked when it was added
            except CameraNotFoundError as exc:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        elif body.uri:
            try:  # the same rules, and the same answer, as adding a camera
                camera = CameraConfig.model_validate({"id": "probe", "uri": body.uri})
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
                ) from exc
            check_media(body.uri)
        else:
            raise unprocessable("give a camera id or a uri")
        result = console.probe(camera)
        jpeg = result.pop("jpeg", None)
        result["snapshot"] = (
            None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        )
        return result

    def zone_filter(names: list[str] | None) -> tuple[FootFilter | None, dict[str, Any]]:
        """The search filter for a query limited to ``names`` (None: anywhere), and what the answer
        says of it: the zones applied and a warning for each that no camera has."""
        if not names:
            return None, {}
        names = sorted(set(names))
        book = ZoneBook.fixed(console.cameras.list_cameras() if console.cameras is not None else [])
        said: dict[str, Any] = {"zones": names}
        warnings = unknown_zone_warnings(names, book.names())
        if warnings:
            said["warnings"] = warnings
        return (lambda camera, x, y: book.in_any(names, camera, (x, y))), said

    def scorer_or_404() -> Any:
        if console.index is None or console.scorer is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=SEARCH_OFF)
        return console.index, console.scorer

    @router.get("/search", tags=["search"], dependencies=guarded, response_model=SearchOut)
    def search(
        text: str = Query(min_length=1, max_length=MAX_SEARCH_TEXT),
        camera: str | None = None,
        since: str | None = Query(None, description="1h, 30m, 2d, or UNIX seconds"),
        until: float | None = Query(None, description="UNIX seconds"),
        limit: int = Query(20, ge=1, le=500),
        zone: Annotated[
            list[ZoneName] | None,
            Query(max_length=16, description="only tracks seen with their feet in this zone (repeat)"),
        ] = None,
    ) -> dict[str, Any]:
        """Recent tracks ranked by the live matcher's calibrated score for ``text``, best first."""
        index, scorer = scorer_or_404()
        try:
            since_s = parse_since(since)
        except ValueError as exc:
            raise unprocessable(str(exc)) from exc
        where, said = zone_filter(zone)
        score = scorer.scorer(text)
        hits = index.search(
            scorer.query_vector(text),
            score,
            camera=camera,
            since=since_s,
            until=until,
            limit=limit,
            where=where,
        )
        return {"text": text, "results": [hit.as_dict() for hit in hits], **said}

    @router.get(
        "/search/thumbnails/{key}.jpg",
        tags=["search"],
        dependencies=guarded,
        response_class=Response,
        responses=binary("the track's thumbnail", "image/jpeg"),
    )
    def thumbnail(key: int) -> Response:
        if console.index is None or not 0 <= key < 2**62:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="search is off")
        data = console.index.thumbnail(key)
        if data is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such track")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/queries/try", tags=["queries"], dependencies=guarded, response_model=TryOut)
    def try_query(body: TryIn) -> dict[str, Any]:
        """What a draft query would have matched over the last ``hours``: per camera the best tracks,
        and the threshold that would have given ``alerts_per_hour`` on that footage; with ``zones``,
        only tracks seen with their feet in one of them, as the standing query would score them."""
        index, scorer = scorer_or_404()
        now = time.time()
        needed_h = min(24.0, 1.0 / body.alerts_per_hour)  # at least one alert's worth at the rate asked
        since = now - body.hours * 3600.0
        score = scorer.scorer(body.text, body.normal_prompts)
        where, said = zone_filter(body.zones)
        hits = index.search(
            scorer.query_vector(body.text), score, since=since, limit=0, exhaustive=True, where=where
        )
        if body.cameras:
            hits = [h for h in hits if h.camera in body.cameras]
        threshold = body.threshold if body.threshold is not None else default_threshold
        span_h = body.hours
        if hits:
            span_h = max(1.0 / 60.0, min(body.hours, (now - min(h.first_seen for h in hits)) / 3600.0))
        cameras: dict[str, list[dict[str, Any]]] = {}
        for hit in hits:
            shown = cameras.setdefault(hit.camera, [])
            if len(shown) < body.per_camera:
                shown.append({**hit.as_dict(), "would_alert": hit.score >= threshold})
        return {
            "text": body.text,
            "tracks": len(hits),
            "footage_hours": round(span_h, 4),
            "footage_too_short": bool(hits) and span_h < needed_h,
            "footage_needed_hours": round(needed_h, 4),
            "threshold": threshold,
            "would_alert": sum(1 for h in hits if h.score >= threshold),
            "suggested_threshold": threshold_for_rate([h.score for h in hits], span_h, body.alerts_per_hour),
            "alerts_per_hour": body.alerts_per_hour,
            "cameras": cameras,
            **said,
        }

    app.include_router(router)
