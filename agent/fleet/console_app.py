"""``watchword fleet serve``: the console in fleet mode, served from the hub's JetStream.

The same sign-in, session cookie and CSRF rules as the agent's console (agent/console/session.py
and its sign-in routes, agent/api/guard.py), and its stylesheet; the fleet's own page
(agent/fleet/static) lists every site with its health and cameras, one live alert list across
sites (filtered by site, camera, query, severity and review state), an alert's evidence from the
hub's mirror of the site's object store, review marks sent down to the site, and fleet queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from fastapi.responses import FileResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from agent.api.guard import LOOPBACK_HOSTS, PUBLIC_PATHS, ApiGuard, bearer_authenticator, require_auth
from agent.api.lockout import AuthLockout
from agent.console.reviews import Action
from agent.console.routes import STATIC as CONSOLE_STATIC
from agent.console.routes import add_console_routes
from agent.console.routes_data import TryIn
from agent.console.services import ERROR_RESPONSES, ConsoleServices
from agent.console.session import CsrfGuard, SessionStore
from agent.fleet.console_state import FleetConsoleState
from agent.fleet.hub import FleetHubError
from agent.fleet.queries import FleetQuery
from agent.queries.registry import Severity

STATIC = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}
EVIDENCE_TYPES = {"crop": "image/jpeg", "frame": "image/jpeg", "json": "application/json"}


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    note: str | None = Field(None, max_length=2000)


class QueryIn(BaseModel):
    """A fleet query as the console sends it (all fields on a change, like a PUT)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=500)
    severity: Severity = "warning"
    enabled: bool = True
    sites: list[str] | None = None
    cameras: list[str] | None = None
    threshold: float | None = Field(None, ge=-1, le=1)


class TryAtSite(TryIn):
    """A draft tried at one site: the body of the agent's ``POST /queries/try``, and the site."""

    site: str = Field(max_length=64)


def create_fleet_app(state: FleetConsoleState, token: str | None, *, loopback_only: bool = True) -> FastAPI:
    """The fleet console's application (see the module doc)."""
    app = FastAPI(title="Watchword fleet", docs_url=None, redoc_url=None)
    sessions = SessionStore(token) if token else None
    console = ConsoleServices(sessions=sessions, pages=False)
    lockout = AuthLockout(state.config.console.auth_lockout)
    authenticators = [] if token is None else [bearer_authenticator(token)]
    if sessions is not None:
        authenticators.append(sessions.authenticator)
    assets = {f"/fleet/static/{p.name}" for p in STATIC.iterdir()} | {"/console/console.css"}
    app.state.auth_required = bool(authenticators)
    app.add_middleware(
        ApiGuard,
        authenticators=authenticators,
        allowed_hosts=LOOPBACK_HOSTS if loopback_only and token is None else None,
        public_paths=PUBLIC_PATHS | {"/", "/session"} | assets,
        lockout=lockout,
    )
    if sessions is not None:
        app.add_middleware(CsrfGuard, sessions=sessions)
    guarded = [Depends(HTTPBearer(auto_error=False)), Depends(require_auth)]
    router = APIRouter(responses=ERROR_RESPONSES)
    sites = set(state.config.site_ids)

    app.mount("/fleet/static", StaticFiles(directory=STATIC), name="fleet")
    app.mount("/console", StaticFiles(directory=CONSOLE_STATIC), name="console")

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "fleet.html", headers=NO_STORE)

    @router.get("/livez", tags=["status"])
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/fleet/sites", tags=["fleet"], dependencies=guarded)
    def list_sites() -> list[dict[str, Any]]:
        """Every site with its health (from its heartbeats) and cameras."""
        return state.sites()

    @router.get("/fleet/alerts", tags=["fleet"], dependencies=guarded)
    def list_alerts(
        site: str | None = Query(None, max_length=64),
        camera: str | None = Query(None, max_length=64),
        query: str | None = Query(None, max_length=500),
        severity: str | None = Query(None, max_length=16),
        state_: str | None = Query(None, alias="state", max_length=16),
        limit: int = Query(200, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """The latest event of every alert of every site, newest first."""
        rows = state.alert_list(state_, site=site, camera=camera, query=query, severity=severity)
        return rows[:limit]

    @router.get("/fleet/alerts/{alert_id}", tags=["fleet"], dependencies=guarded)
    def alert_detail(alert_id: str) -> dict[str, Any]:
        alert = state.alert(alert_id)
        if alert is None:
            raise HTTPException(404, detail="no such alert")
        return alert

    @router.get("/fleet/alerts/{alert_id}/evidence/{kind}", tags=["fleet"], dependencies=guarded)
    def evidence(alert_id: str, kind: str) -> Response:
        """The crop, frame or evidence record, from the hub's mirror of the site's object store."""
        alert = state.alert(alert_id)
        names = (alert or {}).get("fleet_evidence") or {}
        if kind not in EVIDENCE_TYPES or not names.get(kind):
            raise HTTPException(404, detail="no such evidence")
        try:
            data = state.hub.evidence(str(names["bucket"]), str(names[kind]))
        except Exception as exc:  # not mirrored yet, or pruned at the site
            raise HTTPException(404, detail=f"evidence not at the hub: {exc}") from exc
        return Response(
            data, media_type=EVIDENCE_TYPES[kind], headers={"Cache-Control": "private, max-age=3600"}
        )

    @router.post("/fleet/alerts/{alert_id}/review", tags=["fleet"], dependencies=guarded)
    def review(alert_id: str, body: ReviewIn) -> dict[str, Any]:
        """Mark an alert; the mark goes down to the site that raised it (held until it is reachable)."""
        alert = state.alert(alert_id)
        if alert is None:
            raise HTTPException(404, detail="no such alert")
        state.hub.review(str(alert["site"]), alert_id, body.action, body.note, by="fleet-console")
        return {"sent": True, "site": alert["site"]}

    @router.get("/fleet/queries", tags=["fleet"], dependencies=guarded)
    def list_queries() -> dict[str, Any]:
        return {key: q.model_dump(mode="json") for key, q in sorted(state.hub.queries().items())}

    def _query(body: QueryIn) -> FleetQuery:
        unknown = [s for s in body.sites or [] if s not in sites]
        if unknown:
            raise HTTPException(422, detail=f"not a site of this fleet: {', '.join(unknown)}")
        return FleetQuery(**body.model_dump())

    @router.post("/fleet/queries", tags=["fleet"], dependencies=guarded, status_code=201)
    def add_query(body: QueryIn) -> dict[str, Any]:
        """Add a fleet query: every targeted site applies it within about a second."""
        key = state.hub.put_query(_query(body))
        return {"key": key}

    @router.put("/fleet/queries/{key}", tags=["fleet"], dependencies=guarded)
    def change_query(key: str, body: QueryIn) -> dict[str, Any]:
        try:
            state.hub.query(key)
        except FleetHubError as exc:
            raise HTTPException(404, detail=str(exc)) from exc
        state.hub.put_query(_query(body), key=key)
        return {"key": key}

    @router.delete("/fleet/queries/{key}", tags=["fleet"], dependencies=guarded, status_code=204)
    def remove_query(key: str) -> None:
        try:
            state.hub.delete_query(key)
        except FleetHubError as exc:
            raise HTTPException(404, detail=str(exc)) from exc

    @router.post("/fleet/queries/try", tags=["fleet"], dependencies=guarded)
    def try_query(body: TryAtSite) -> dict[str, Any]:
        """Try a draft against one site's recent tracks (what its console's try answers)."""
        if body.site not in sites:
            raise HTTPException(422, detail=f"not a site of this fleet: {body.site}")
        draft = body.model_dump(exclude={"site"}, exclude_none=True)
        try:
            answer = state.hub.try_query(body.site, draft)
        except FleetHubError as exc:
            raise HTTPException(504, detail=str(exc)) from exc
        if "error" in answer:
            raise HTTPException(502, detail=f"site {body.site}: {answer['error']}")
        return answer

    @router.get("/fleet/queries/applied", tags=["fleet"], dependencies=guarded)
    def applied() -> dict[str, list[str]]:
        """Per site, the fleet query keys its last heartbeat reported as applied."""
        out: dict[str, list[str]] = {}
        for site in state.config.site_ids:
            beat = state.health.get(site) or {}
            out[site] = list((beat.get("health") or {}).get("fleet", {}).get("queries", []) or [])
        return out

    app.include_router(router)
    add_console_routes(app, console, guarded, None, None, lockout)  # sign-in, sign-out (the console's)
    return app
