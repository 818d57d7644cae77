"""FastAPI application: routes over an :class:`ApiContext` that the runner fills in."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from agent import __version__
from agent.queries import QueryError, QueryNotFoundError, QueryRegistry, QueryUpdate


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
    """

    registry: QueryRegistry
    token: str | None
    health: Callable[[], dict[str, Any]]
    metrics: Callable[[], str]
    alerts: AlertStore | None = None
    evidence_dir: Path | None = None
    page_limit: int = 500


# Module level: with postponed annotations FastAPI resolves dependency annotations in module globals.
_bearer = HTTPBearer(auto_error=False)


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="what to watch for, 1 to 500 characters")
    enabled: bool = True
    cameras: list[str] | None = Field(None, description="camera ids; null means every camera")
    threshold: float | None = Field(None, gt=0, lt=1, description="null means automatic")
    severity: str = Field("warning", pattern="^(info|warning|critical)$")
    cooldown_s: float = Field(60.0, ge=0)
    normal_prompts: list[str] | None = None


class QueryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    enabled: bool | None = None
    cameras: list[str] | None = None
    threshold: float | None = Field(None, gt=0, lt=1)
    severity: str | None = Field(None, pattern="^(info|warning|critical)$")
    cooldown_s: float | None = Field(None, ge=0)
    normal_prompts: list[str] | None = None


def create_app(context: ApiContext) -> FastAPI:
    """The API application; the OpenAPI schema is served at /openapi.json and docs at /docs."""
    app = FastAPI(title="Watchword", version=__version__, description="Edge video analytics agent API")

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if context.token is None:
            return
        supplied = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(supplied.encode(), context.token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    guarded = [Depends(authorize)]

    def unprocessable(exc: Exception) -> HTTPException:
        return HTTPException(422, detail=str(exc))

    @app.get("/health", tags=["status"])
    def health() -> dict[str, Any]:
        return context.health()

    @app.get("/metrics", tags=["status"], dependencies=guarded, response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(context.metrics(), media_type="text/plain; version=0.0.4")

    @app.get("/queries", tags=["queries"], dependencies=guarded)
    def list_queries() -> list[dict[str, Any]]:
        return [q.to_dict() for q in context.registry.list_queries()]

    @app.post("/queries", tags=["queries"], dependencies=guarded, status_code=status.HTTP_201_CREATED)
    def add_query(body: QueryIn) -> dict[str, Any]:
        try:
            query = context.registry.add(
                body.text,
                cameras=body.cameras,
                threshold=body.threshold,
                severity=body.severity,
                cooldown_s=body.cooldown_s,
                normal_prompts=body.normal_prompts,
                enabled=body.enabled,
            )
        except QueryError as exc:
            raise unprocessable(exc) from exc
        return query.to_dict()

    @app.get("/queries/{query_id}", tags=["queries"], dependencies=guarded)
    def get_query(query_id: int) -> dict[str, Any]:
        try:
            return context.registry.get(query_id).to_dict()
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc

    @app.patch("/queries/{query_id}", tags=["queries"], dependencies=guarded)
    def patch_query(query_id: int, body: QueryPatch) -> dict[str, Any]:
        sent = body.model_fields_set
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
        )
        try:
            return context.registry.update(query_id, change).to_dict()
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
        except QueryError as exc:
            raise unprocessable(exc) from exc

    @app.delete("/queries/{query_id}", tags=["queries"], dependencies=guarded, status_code=204)
    def delete_query(query_id: int) -> None:
        try:
            context.registry.remove(query_id)
        except QueryNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc

    @app.get("/alerts", tags=["alerts"], dependencies=guarded)
    def list_alerts(
        limit: int = Query(100, ge=1),
        offset: int = Query(0, ge=0),
        camera: str | None = None,
        query_id: int | None = None,
        since: float | None = Query(None, description="UNIX seconds"),
        until: float | None = Query(None, description="UNIX seconds"),
    ) -> dict[str, Any]:
        if context.alerts is None:
            return {"alerts": [], "limit": limit, "offset": offset}
        limit = min(limit, context.page_limit)
        items = context.alerts.recent(
            limit=limit, offset=offset, camera=camera, query_id=query_id, since=since, until=until
        )
        return {"alerts": items, "limit": limit, "offset": offset}

    @app.get("/alerts/{alert_id}/evidence/{name}", tags=["alerts"], dependencies=guarded)
    def evidence(alert_id: str, name: str) -> FileResponse:
        if context.evidence_dir is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="alerts are not configured")
        root = context.evidence_dir.resolve()
        path = (root / alert_id / name).resolve()
        if root not in path.parents or not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such evidence file")
        return FileResponse(path)

    return app
