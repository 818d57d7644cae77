"""Wires the console's parts into the agent: cameras from the database, feedback, search, live view.

The agent keeps one :class:`ConsoleRuntime`; it builds what the config asks for, hands the matcher
its exemplars and sample listener, and gives the API its :class:`ConsoleServices`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.api.metrics import Metric
from agent.cameras.media import MediaFolders
from agent.cameras.store import CameraStore
from agent.cameras.sync import CameraSync
from agent.config import AgentConfig
from agent.matching.exemplars import ExemplarStore, FeedbackConfig
from agent.matching.samples import TrackSample
from agent.search.config import SearchConfig
from agent.sources.config import CameraConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

    from agent.alerts import AlertManager
    from agent.alerts.clip import ClipRecorder
    from agent.api.lockout import AuthLockout
    from agent.console.events import EventHub
    from agent.console.live import LiveFrames
    from agent.console.reviews import ReviewStore
    from agent.console.services import ConsoleServices
    from agent.console.session import SessionStore
    from agent.matching.querybank import TextEncoder
    from agent.pipeline import Pipeline
    from agent.search.index import TrackIndex

log = logging.getLogger(__name__)


class ConsoleRuntime:
    """The console's runtime parts for one agent.

    Cameras live in the state database: the YAML's are applied to it at every start (the YAML wins
    for the ids it lists), those added at run time are kept (agent/cameras/store.py); ``config`` is
    the agent config with the stored cameras.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.cameras = CameraStore(config.database)
        applied = self.cameras.apply_config(list(config.cameras))
        for line in applied.lines("the config"):
            log.info("%s", line)
        stored = self.cameras.list_cameras()
        self._yaml_cameras = list(config.cameras)
        self._listed = frozenset(camera.id for camera in config.cameras)
        self.config = config.model_copy(update={"cameras": stored})
        self.console_enabled = config.api.enabled and getattr(config.api, "console", True)
        feedback: FeedbackConfig = getattr(config, "feedback", FeedbackConfig())
        self.exemplars = ExemplarStore(config.database, feedback)
        self.search_config: SearchConfig = getattr(config, "search", SearchConfig())
        self.index: TrackIndex | None = None
        self.encoder: TextEncoder | None = None
        self.live: LiveFrames | None = None
        self.hub: EventHub | None = None
        self.reviews: ReviewStore | None = None
        self._sync: CameraSync | None = None
        self._alerts: AlertManager | None = None
        if self.console_enabled:
            from agent.console.live import LiveFrames

            self.live = LiveFrames(self._query_names)
        self._registry: Any = None
        self._sessions: SessionStore | None = None
        self.clips: ClipRecorder | None = None

    @property
    def keep_running(self) -> bool:
        """With the console on, the agent runs on when every camera has ended (one may be added)."""
        return self.console_enabled

    def media_folders(self) -> MediaFolders:
        """``api.media_dirs``, else the folder of each file camera (YAML and database) and
        ``<state_dir>/media``."""
        configured = self.config.api.media_dirs
        if configured is not None:
            return MediaFolders(configured)
        return MediaFolders.default([*self._yaml_cameras, *self.config.cameras], self.config.state_dir)

    def search_directory(self) -> Path:
        return self.search_config.index_directory(self.config.database)

    def attach_matching(self, encoder: TextEncoder, registry: Any) -> None:
        """Called once a CLIP model is loaded: search over recent tracks needs its embeddings."""
        self.encoder = encoder
        self._registry = registry
        if self.search_config.enabled:
            from agent.search.index import TrackIndex

            self.index = TrackIndex(self.search_directory(), self.search_config)

    def metrics(self) -> list[Metric]:
        """The search index's numbers, when it runs (:meth:`TrackIndex.metrics`)."""
        return [] if self.index is None else self.index.metrics()

    def on_samples(self, samples: list[TrackSample]) -> None:
        if self.index is not None:
            self.index.observe(samples)

    def _query_names(self) -> dict[str, str]:
        if self._registry is None:
            return {}
        return {str(q.id): q.text for q in self._registry.list_queries()}

    # --- life cycle --------------------------------------------------------------------------

    def start(self, pipeline: Pipeline, alerts: AlertManager, status: Any) -> None:
        """Start following the camera table, the search writer and the push channel."""
        self._alerts = alerts
        running = [c for c in self.config.cameras if c.enabled]
        self._sync = CameraSync(self.cameras, pipeline, running, listed=self._listed)
        self._sync.start()
        if self.index is not None:
            self.index.start()
        if self.console_enabled:
            from agent.console.events import EventHub
            from agent.console.reviews import ReviewStore

            on_alert = None
            evidence_dir = alerts.config.evidence_dir
            clip = alerts.config.clip
            if evidence_dir is not None and self.live is not None and clip.enabled:
                from agent.alerts.clip import ClipRecorder

                self.clips = ClipRecorder(evidence_dir, before_s=clip.before_s, after_s=clip.after_s)
                alerts.clip_after_s = clip.after_s  # the opening payloads name the clip ahead
                self.live.listeners.append(self.clips.process)
                on_alert = self.clips.request
            self.hub = EventHub(alerts.config.database, status, on_alert=on_alert)
            self.hub.start()
            self.reviews = ReviewStore(
                alerts.config.database,
                alerts.config.evidence_dir,
                on_false_alarm=self._false_alarm,
                on_unmarked_false=self.exemplars.remove_alert,
            )

    def close(self) -> None:
        """Stop in order: the push channel first (it ends open streams), then the writers."""
        if self.hub is not None:
            self.hub.close()
        if self.clips is not None:
            self.clips.close()
        if self._sync is not None:
            self._sync.close()
        if self.index is not None:
            self.index.close()
            self.index = None
        if self.reviews is not None:
            self.reviews.close()
        if self._sessions is not None:
            self._sessions.shutdown()
        self.exemplars.close()
        self.cameras.close()

    def review_mark(self) -> Any:
        """The review store's ``mark`` once the console has started (None before, or with no console)."""
        return None if self.reviews is None else self.reviews.mark

    # --- feedback ----------------------------------------------------------------------------

    def _false_alarm(self, payload: dict[str, Any]) -> None:
        """A false alarm: the track's kept crop embeddings become negatives of the query on the camera."""
        camera, track_id, query_id = payload.get("camera"), payload.get("track_id"), payload.get("query_id")
        if not isinstance(camera, str) or not isinstance(track_id, int) or not isinstance(query_id, int):
            return
        embeddings = self.index.track_embeddings(camera, track_id) if self.index is not None else None
        if embeddings is None:
            embeddings = self._crop_embedding(payload)
        if embeddings is None:
            log.warning(
                "alert %s: false alarm noted, but no crop embedding to learn from", payload.get("alert_id")
            )
            return
        added = self.exemplars.add(query_id, camera, embeddings, alert_id=payload.get("alert_id"))
        log.info(
            "alert %s: %d negative exemplars for query %d on %s",
            payload.get("alert_id"),
            added,
            query_id,
            camera,
        )

    def _crop_embedding(self, payload: dict[str, Any]) -> Any:
        """Embed the evidence crop when the track's samples are gone (pruned, or a previous run)."""
        encoder = self.encoder
        evidence = payload.get("evidence") or {}
        if (
            encoder is None
            or self._alerts is None
            or not evidence.get("crop")
            or not hasattr(encoder, "embed_regions")
        ):
            return None
        import cv2

        image = cv2.imread(str(self._alerts.config.evidence_dir / evidence["crop"]))
        if image is None:
            return None
        height, width = image.shape[:2]
        return encoder.embed_regions([(image, (0.0, 0.0, float(width), float(height)))])

    # --- the API -----------------------------------------------------------------------------

    def services(self, token: str | None) -> ConsoleServices:
        # Here, not at the top: the services load starlette and asyncio, which a run without the
        # API (and so without the console) never needs.
        from agent.cameras.probe import probe_camera
        from agent.console.services import ConsoleServices
        from agent.console.session import SESSIONS_FILE, SessionStore
        from agent.search.scorer import TextScorer

        def probe(camera: CameraConfig) -> dict[str, Any]:
            result = probe_camera(camera)
            return {
                "ok": result.ok,
                "jpeg": result.jpeg,
                "width": result.width,
                "height": result.height,
                "error": result.error,
                "seconds": round(result.seconds, 2),
            }

        scorer = None
        if self.encoder is not None:
            scorer = TextScorer(self.encoder, self.config.matching)
        if token and self._sessions is None:
            self._sessions = SessionStore(token, path=self.config.state_dir / SESSIONS_FILE)
        return ConsoleServices(
            sessions=self._sessions if token else None,
            hub=self.hub,
            live=self.live,
            reviews=self.reviews,
            cameras=self.cameras,
            index=self.index,
            scorer=scorer,
            probe=probe,
            media=self.media_folders(),
            pages=self.console_enabled,
            default_threshold=self.config.matching.default_threshold,
        )


def console_authenticators(console: ConsoleServices) -> list[Callable[[Mapping[str, str]], str | None]]:
    """The API guard accepts a live console session cookie (with the bearer token)."""
    return [] if console.sessions is None else [console.sessions.authenticator]


def console_public_paths(console: ConsoleServices) -> frozenset[str]:
    """Paths answered without authentication: the sign-in state and the pages' static files."""
    if not console.pages:
        return frozenset({"/session"})
    from agent.console.routes import STATIC

    assets = {f"/console/{path.name}" for path in STATIC.iterdir() if path.is_file()}
    return frozenset({"/", "/session", *assets})


def add_routes(app: FastAPI, context: Any, guarded: list[Any], lockout: AuthLockout) -> None:
    """Add the console's routes (and its CSRF check) to the API app; called by ``create_app``;
    sign-ins count against ``lockout`` like bearer tokens."""
    from agent.console.routes import add_console_routes
    from agent.console.routes_data import add_data_routes
    from agent.console.session import CsrfGuard

    console: ConsoleServices = context.console
    registry = getattr(context, "registry", None)
    if console.thresholds is None and registry is not None:

        def thresholds() -> dict[int, float | None]:
            return {query.id: query.threshold for query in registry.list_queries()}

        console.thresholds = thresholds
    if console.sessions is not None:
        app.add_middleware(CsrfGuard, sessions=console.sessions)  # outermost: before the API guard
    alerts = context.alerts
    add_console_routes(app, console, guarded, getattr(alerts, "get", None), context.evidence_dir, lockout)

    def camera_status() -> dict[str, Any]:
        cameras: dict[str, Any] = context.health().get("cameras", {})
        return cameras

    add_data_routes(app, console, guarded, camera_status, console.default_threshold)
