"""FastAPI application: routes over an :class:`ApiContext` that the runner fills in.

Authentication, the host check and the body limit happen in :class:`agent.api.guard.ApiGuard`,
before a route reads the body. There are no interactive docs pages (they load scripts from a CDN);
the OpenAPI schema at ``/openapi.json`` needs the token like every route but ``/health``/``/livez``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from agent import __version__
from agent.api.guard import (
    DEFAULT_MAX_BODY_BYTES,
    LOOPBACK_HOSTS,
    PUBLIC_PATHS,
    ApiGuard,
    Authenticator,
    bearer_authenticator,
    require_auth,
)
from agent.api.headers import SecurityHeaders
from agent.api.lockout import AuthLockout, AuthLockoutConfig
from agent.api.models import (
    SQLITE_MAX_INT,
    AlertsPage,
    DbId,
    DeadLettersPage,
    PathPart,
    QueryIn,
    QueryOut,
    QueryPatch,
    Queued,
    RetryIn,
    binary,
)
from agent.queries import Query as StandingQuery
from agent.queries import QueryError, QueryNotFoundError, QueryRegistry, QueryUpdate
from agent.queries.bounds import unknown_cameras
from agent.zone_names import unknown_zone_warnings

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    """What the API needs of the alert manager."""

    def recent(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        camera: str | None = None,
        query_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]: ...

    def dead_letters(
        self, *, sink: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]: ...

    def retry_dead_letters(self, *, sink: str | None = None, event_row: int | None = None) -> int: ...


@dataclass
class ApiContext:
    """What the routes read and change.

    Attributes:
        registry: the query registry (the same database the agent uses).
        token: the bearer token every route but /health requires; None disables the check.
        health: per-camera health, for GET /health.
        metrics: Prometheus text, for GET /metrics.
        alerts: the alert store, or None when alerts are not configured.
        evidence_dir: where evidence bundles are, one folder per alert id.
        page_limit: the most alerts one page returns.
        cameras: the site's camera ids, when known: queries naming others are refused (422).
        zone_names: the zone names the site's cameras have, when known: a query naming another zone
            is kept (an operator may draw it next) and answered with a ``warnings`` entry naming it.
        authenticators: more ways to authenticate than the token (a console session cookie).
        max_body_bytes: larger request bodies are refused with 413 before they are read.
        loopback_only: the server binds a loopback address; without a token, only loopback
            ``Host`` names are answered.
        cue_mapping: a query text -> its behaviour-cue mapping (``cue``, ``confidence``, ``reason``...),
            shown as ``cue`` in every query the API returns; None when pose cues are off.
        console: the operator console's parts (``agent.console.services.ConsoleServices``), or None.
        auth_lockout: failed authentications per client (bearer and sign-in); None: a lockout with
            the default thresholds.
    """

    registry: QueryRegistry
    token: str | None
    health: Callable[[], dict[str, Any]]
    metrics: Callable[[], str]
    alerts: AlertStore | None = None
    evidence_dir: Path | None = None
    page_limit: int = 500
    cameras: Callable[[], Collection[str] | None] | None = None
    zone_names: Callable[[], Collection[str] | None] | None = None
    authenticators: list[Authenticator] = field(default_factory=list)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    loopback_only: bool = True
    cue_mapping: Callable[[str], dict[str, Any]] | None = None
    auth_lockout: AuthLockout | None = None

    def query_view(self, query: StandingQuery, *, check_zones: bool = False) -> dict[str, Any]:
        """A query as the API returns it, with its cue mapping when pose cues are on; with
        ``check_zones`` (it was just added or changed), ``warnings`` for zones no camera has."""
        view = query.to_dict()
        if self.cue_mapping is not None:
            view["cue"] = self.cue_mapping(query.text)
        if check_zones and query.zones and self.zone_names is not None:
            known = self.zone_names()
            warnings = unknown_zone_warnings(query.zones, None if known is None else frozenset(known))
            if warnings:
                view["warnings"] = warnings
        return view

    console: Any = None


# Module level: with postponed annotations FastAPI resolves dependency annotations in module globals.
_bearer = HTTPBearer(auto_error=False)


class ErrorBody(BaseModel):
    detail: Any


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorBody}


# What the guard and the routes answer besides success; documented so the schema matches the server.
BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: _error(
        "a malformed request: a body that is not UTF-8, a Content-Length that is not a number, or "
        "(an API without a token) a Host that is not a loopback name"
    )
}
GUARDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    **BAD_REQUEST,
    401: _error("missing or wrong bearer token"),
    413: _error("request body too large"),
    429: _error("too many failed authentications from this address (see Retry-After)"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("no such item")}


def _finite_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the rejected input (it may be NaN, not JSON, or a secret)."""
    return [
        {key: value for key, value in error.items() if key not in {"input", "ctx", "url"}} for error in errors
    ]


def create_app(context: ApiContext) -> FastAPI:
    """The API application behind its guard; the OpenAPI schema is at /openapi.json (token needed)."""
    app = FastAPI(
        title="Watchword",
        version=__version__,
        description="Edge video analytics agent API",
        docs_url=None,
        redoc_url=None,
    )
    authenticators = list(context.authenticators)
    if context.token is not None:
        authenticators.insert(0, bearer_authenticator(context.token))
    public_paths = PUBLIC_PATHS
    if context.console is not None:  # the console's session cookie and its public pages (agent/console)
        from agent.console.wiring import console_authenticators, console_public_paths

        authenticators += console_authenticators(context.console)
        public_paths = public_paths | console_public_paths(context.console)
    app.state.auth_required = bool(authenticators)
    lockout = context.auth_lockout if context.auth_lockout is not None else AuthLockout(AuthLockoutConfig())
    app.add_middleware(
        ApiGuard,
        authenticators=authenticators,
        allowed_hosts=LOOPBACK_HOSTS if context.loopback_only and context.token is None else None,
        max_body_bytes=context.max_body_bytes,
        public_paths=public_paths,
        lockout=lockout,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content=jsonable_encoder({"detail": _finite_errors(exc.errors())})
        )

    # The bearer scheme is declared for the OpenAPI schema; the guard has already checked it.
    guarded = [Depends(_bearer), Depends(require_auth)]

    def unprocessable(exc: Exception) -> HTTPException:
        # The same shape as pydantic's validation errors, which is what the schema documents for 422.
        return HTTPException(422, detail=[{"loc": ["body"], "msg": str(exc), "type": "value_error"}])

    def check_cameras(cameras: list[str] | None) -> None:
        known = context.cameras() if context.cameras is not None else None
        if known is None and cameras:
            log.warning("query cameras %s not checked: the site's cameras are not known", ", ".join(cameras))
        unknown = unknown_cameras(cameras, known)
        if unknown:
            raise unprocessable(QueryError(f"unknown camera ids: {', '.join(unknown)}"))

    @app.get(
        "/health",
        tags=["status"],
        responses={**BAD_REQUEST, 503: {"description": "degraded: see problems"}},
        summary="Health of cameras, sinks, storage and LMM; 503 when degraded",
    )
    def health() -> JSONResponse:
        body = context.health()
        code = 503 if body.get("status") == "degraded" else 200
        return JSONResponse(status_code=code, content=jsonable_encoder(body))

    @app.get(
        "/livez", tags=["status"], responses=BAD_REQUEST, summary="Liveness: the process answers requests"
    )
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/metrics",
        tags=["status"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        response_class=PlainTextResponse,
    )
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(context.metrics(), media_type="text/plain; version=0.0.4")

    @app.get(
        "/queries",
        tags=["queries"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        response_model=list[QueryOut],
        response_model_exclude_unset=True,
    )
    def list_queries() -> list[dict[str, Any]]:
        return [context.query_view(q) for q in context.registry.list_queries()]

    @app.post(
        "/queries",
        tags=["queries"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        status_code=status.HTTP_201_CREATED,
        response_model=QueryOut,
        response_model_exclude_unset=True,
    )
    def add_query(body: QueryIn) -> dict[str, Any]:
        check_cameras(body.cameras)
        try:
            query = context.registry.add(
                body.text,
                cameras=body.cameras,
                threshold=body.threshold,
                severity=body.severity,
                cooldown_s=body.cooldown_s,
                normal_prompts=body.normal_prompts,
                enabled=body.enabled,
                zones=body.zones,
            )
        except QueryError as exc:
            raise unprocessable(exc) from exc
        return context.query_view(query, check_zones=True)

    @app.get(
        "/queries/{query_id}",
        tags=["queries"],
        dependencies=guarded,
        responses={**GUARDED_RESPONSES, **NOT_FOUND},
        response_model=QueryOut,
        response_model_exclude_unset=True,
    )
    def get_query(query_id: DbId) -> dict[str, Any]:
        try:
            return context.query_view(context.registry.get(query_id))
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc

    @app.patch(
        "/queries/{query_id}",
        tags=["queries"],
        dependencies=guarded,
        responses={**GUARDED_RESPONSES, **NOT_FOUND},
        response_model=QueryOut,
        response_model_exclude_unset=True,
    )
    def patch_query(query_id: DbId, body: QueryPatch) -> dict[str, Any]:
        sent = body.model_fields_set
        check_cameras(body.cameras)
        change = QueryUpdate(
            text=body.text,
            enabled=body.enabled,
            cameras=body.cameras,
            clear_cameras="cameras" in sent and body.cameras is None,
            threshold=body.threshold,
            clear_threshold="threshold" in sent and body.threshold is None,
            severity=body.severity,
            cooldown_s=body.cooldown_s,
            normal_prompts=body.normal_prompts,
            clear_normal_prompts="normal_prompts" in sent and body.normal_prompts is None,
            zones=body.zones,
            clear_zones="zones" in sent and body.zones is None,
        )
        try:
            return context.query_view(
                context.registry.update(query_id, change), check_zones=body.zones is not None
            )
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        except QueryError as exc:
            raise unprocessable(exc) from exc

    @app.delete(
        "/queries/{query_id}",
        tags=["queries"],
        dependencies=guarded,
        responses={**GUARDED_RESPONSES, **NOT_FOUND},
        status_code=204,
    )
    def delete_query(query_id: DbId) -> None:
        try:
            context.registry.remove(query_id)
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        except QueryError as exc:  # a fleet query: changed only at the hub
            raise unprocessable(exc) from exc

    @app.get(
        "/alerts",
        tags=["alerts"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        response_model=AlertsPage,
    )
    def list_alerts(
        limit: int = Query(100, ge=1, le=SQLITE_MAX_INT),
        offset: int = Query(0, ge=0, le=SQLITE_MAX_INT),
        camera: str | None = Query(None, max_length=64),
        query_id: int | None = Query(None, ge=0, le=SQLITE_MAX_INT),
        since: float | None = Query(None, description="UNIX seconds", allow_inf_nan=False),
        until: float | None = Query(None, description="UNIX seconds", allow_inf_nan=False),
    ) -> dict[str, Any]:
        if context.alerts is None:
            return {"alerts": [], "limit": limit, "offset": offset}
        limit = min(limit, context.page_limit)
        items = context.alerts.recent(
            limit=limit, offset=offset, camera=camera, query_id=query_id, since=since, until=until
        )
        if getattr(context.console, "reviews", None) is not None:  # the operator's marks
            items = context.console.reviews.attach(items)
        return {"alerts": items, "limit": limit, "offset": offset}

    @app.get(
        "/alerts/{alert_id}/evidence/{name}",
        tags=["alerts"],
        dependencies=guarded,
        responses={
            **GUARDED_RESPONSES,
            **NOT_FOUND,
            **binary("the file: crop, frame, evidence record", "image/jpeg", "application/json", "video/mp4"),
        },
        response_class=FileResponse,
    )
    def evidence(alert_id: PathPart, name: PathPart) -> FileResponse:
        if context.evidence_dir is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="alerts are not configured")
        root = context.evidence_dir.resolve()
        try:
            path = (root / alert_id / name).resolve()
            found = root in path.parents and path.is_file()
        except (ValueError, OSError):  # a NUL byte or an over-long name is no file of ours
            found = False
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such evidence file")
        return FileResponse(path)

    @app.get(
        "/dead-letters",
        tags=["alerts"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        response_model=DeadLettersPage,
    )
    def list_dead_letters(
        sink: str | None = Query(None, max_length=64),
        limit: int = Query(100, ge=1, le=SQLITE_MAX_INT),
        offset: int = Query(0, ge=0, le=SQLITE_MAX_INT),
    ) -> dict[str, Any]:
        """Alert events a sink refused for good (HTTP 4xx) or gave up on, oldest first."""
        if context.alerts is None:
            return {"dead_letters": [], "limit": limit, "offset": offset}
        limit = min(limit, context.page_limit)
        items = context.alerts.dead_letters(sink=sink, limit=limit, offset=offset)
        return {"dead_letters": items, "limit": limit, "offset": offset}

    @app.post(
        "/dead-letters/retry",
        tags=["alerts"],
        dependencies=guarded,
        responses=GUARDED_RESPONSES,
        response_model=Queued,
    )
    def retry_dead_letters(body: RetryIn) -> dict[str, int]:
        """Queue dead letters for delivery again (all, one sink's, or one event of one sink)."""
        if context.alerts is None:
            return {"queued": 0}
        return {"queued": context.alerts.retry_dead_letters(sink=body.sink, event_row=body.event_row)}

    if context.console is not None:
        from agent.console.wiring import add_routes

        add_routes(app, context, guarded, lockout)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so every refusal carries them too
    return app
