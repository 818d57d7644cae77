"""Console routes: the pages, sign-in, the push channel, live frames and alert review."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from agent.alerts.clip import CLIP_FILE
from agent.api.lockout import AuthLockout, client_key, retry_after
from agent.api.models import binary
from agent.console.live import MJPEG_BOUNDARY, mjpeg_stream
from agent.console.reason import alert_reason
from agent.console.reviews import Action, ReviewError
from agent.console.services import (
    ERROR_RESPONSES,
    SEARCH_OFF,
    AlertId,
    CameraId,
    CapabilitiesOut,
    ConsoleServices,
    ReviewOut,
    SessionState,
    SignedOut,
)

STATIC = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=1024)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    note: str | None = Field(None, max_length=2000)


def add_console_routes(
    app: FastAPI,
    console: ConsoleServices,
    guarded: list[Any],
    alert_events: Callable[[str], list[dict[str, Any]]] | None,
    evidence_dir: Path | None,
    lockout: AuthLockout,
) -> None:
    """Add the console's routes to ``app``; ``guarded`` are the API's auth dependencies; a wrong
    sign-in counts against the client in ``lockout`` (shared with the bearer token's check)."""
    router = APIRouter(responses=ERROR_RESPONSES)

    if console.pages:
        app.mount("/console", StaticFiles(directory=STATIC), name="console")

        @router.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers=NO_STORE)

    @router.get("/session", tags=["console"], response_model=SessionState)
    def session_state(request: Request) -> dict[str, Any]:
        """Whether this browser is signed in, and whether signing in is needed at all."""
        sessions = console.sessions
        return {
            "token_required": sessions is not None,
            "signed_in": sessions is None or sessions.signed_in(request),
        }

    @router.post("/session", tags=["console"], response_model=SessionState)
    def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        """Exchange the API token for an HttpOnly session cookie (the token never goes in a URL)."""
        sessions = console.sessions
        if sessions is None:
            return {"signed_in": True, "token_required": False}
        client = client_key(request.scope)
        locked_s = lockout.locked_for(client)
        if locked_s > 0:  # refused without looking at the token: a right guess looks like a wrong one
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail=f"too many failed sign-ins from this address; try again in {retry_after(locked_s)} s",
                headers={"Retry-After": retry_after(locked_s)},
            )
        if not sessions.token_matches(body.token):
            lockout.failed(client, "sign_in")
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong token")
        lockout.succeeded(client)
        sessions.open(response, secure=request.url.scheme == "https")
        return {"signed_in": True, "token_required": True}

    @router.delete("/session", tags=["console"], response_model=SignedOut)
    def sign_out(request: Request, response: Response) -> dict[str, Any]:
        """End this browser's session (public, like sign-in: the CSRF check still applies)."""
        if console.sessions is not None:
            console.sessions.close(request, response)
        return {"signed_in": False}

    @router.get(
        "/events",
        tags=["console"],
        dependencies=guarded,
        response_class=StreamingResponse,
        responses={200: {"description": "an endless event stream", "content": {"text/event-stream": {}}}},
    )
    def events(request: Request) -> StreamingResponse:
        """Server-Sent Events: ``alert`` (every stored alert event, with ids for resume) and ``status``."""
        if console.hub is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the push channel is off")
        stream = console.hub.stream(request.headers.get("last-event-id"), request.is_disconnected)
        headers = {**NO_STORE, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @router.get(
        "/cameras/{camera_id}/live.mjpg",
        tags=["cameras"],
        dependencies=guarded,
        response_class=StreamingResponse,
        responses=binary("an endless stream of JPEG frames", "multipart/x-mixed-replace"),
    )
    def live_stream(
        camera_id: CameraId, request: Request, fps: float = Query(3.0, gt=0, le=15)
    ) -> StreamingResponse:
        """MJPEG: the camera's analysed frames with boxes, track ids and best query scores, pushed as
        they come (at most ``fps`` a second); frames are drawn only while someone watches."""
        live = console.live
        if live is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="the live view is off")
        hub = console.hub
        stream = mjpeg_stream(
            live, camera_id, fps, lambda: hub is not None and hub.closed, request.is_disconnected
        )
        media_type = f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"
        return StreamingResponse(stream, media_type=media_type, headers=NO_STORE)

    @router.get(
        "/cameras/{camera_id}/live.jpg",
        tags=["cameras"],
        dependencies=guarded,
        response_class=Response,
        responses=binary("the latest analysed frame", "image/jpeg"),
    )
    def live_frame(camera_id: CameraId) -> Response:
        """The camera's latest analysed frame with boxes, track ids and best query scores."""
        frame = console.live.jpeg(camera_id) if console.live is not None else None
        if frame is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no analysed frame from this camera yet")
        headers = {**NO_STORE, "X-Frame-Index": str(frame.index), "X-Frame-Time": f"{frame.wall_time:.3f}"}
        return Response(frame.jpeg, media_type="image/jpeg", headers=headers)

    @router.get("/capabilities", tags=["console"], dependencies=guarded, response_model=CapabilitiesOut)
    def capabilities() -> dict[str, Any]:
        """What this agent's console can do, and for what is off, why and how to turn it on."""
        search = console.index is not None and console.scorer is not None
        return {
            "search": search,
            "search_reason": None if search else SEARCH_OFF,
            "live": console.live is not None,
            "reviews": console.reviews is not None,
            "default_threshold": console.default_threshold,
        }

    @router.get("/alerts/{alert_id}", tags=["alerts"], dependencies=guarded)
    def alert_detail(alert_id: AlertId) -> dict[str, Any]:
        """Every event of the alert, its evidence record, review marks, delivery per sink, and
        ``reason``: one line saying why it fired (cue values, the LMM's verdict, or the score), and
        ``threshold``: the query's effective threshold now (null when the query is gone)."""
        events = alert_events(alert_id) if alert_events is not None else []
        if not events:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such alert")
        reviews = console.reviews
        record = None
        if evidence_dir is not None and events[-1].get("evidence"):
            import json

            try:
                record = json.loads((evidence_dir / alert_id / "evidence.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = None
        latest = events[-1]
        if evidence_dir is not None and latest.get("evidence"):
            # the payload names the clip ahead; the page gets it once it is written
            written = (evidence_dir / alert_id / CLIP_FILE).is_file()
            evidence = {k: v for k, v in latest["evidence"].items() if k != "clip"}
            if written:
                evidence["clip"] = f"{alert_id}/{CLIP_FILE}"
            latest = {**latest, "evidence": evidence}
            events = [*events[:-1], latest]
        threshold = console.query_threshold(latest.get("query_id"))
        return {
            "alert": events[-1],
            "reason": alert_reason(latest, record, threshold),
            "threshold": threshold,
            "events": events,
            "evidence": record,
            "review": reviews.attach([dict(events[-1])])[0]["review"] if reviews is not None else None,
            "deliveries": reviews.deliveries(alert_id) if reviews is not None else [],
        }

    @router.post("/alerts/{alert_id}/review", tags=["alerts"], dependencies=guarded, response_model=ReviewOut)
    def review(alert_id: AlertId, body: ReviewIn) -> dict[str, Any]:
        """Acknowledge, resolve, reopen, mark a true / false alarm (a false alarm teaches the matcher), or
        only add a note (``note``)."""
        if console.reviews is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="alerts are not configured")
        try:
            result = console.reviews.mark(alert_id, body.action, body.note)
        except ReviewError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        return result

    app.include_router(router)
