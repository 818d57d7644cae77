"""Assembles the whole agent from a config: cameras, detection, tracking, standing-query matching,
re-ranking, alerts and the HTTP API; runs it and shuts it down in order.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.alerts import AlertManager
from agent.alerts.outbox import OutboxError
from agent.config import AgentConfig
from agent.console.wiring import ConsoleRuntime
from agent.decision.core import DecisionCore
from agent.detection.loader import DetectorLoader
from agent.health_report import build_health, storage_metrics
from agent.pipeline import Analyzer, Pipeline, RunSummary
from agent.queries import QueryError, QueryRegistry
from agent.queries.startup import register_startup_queries
from agent.state_lock import StateLock, StateLockError, lock_agent_state

if TYPE_CHECKING:
    from agent.api.lockout import AuthLockout
    from agent.api.server import ApiServer
    from agent.embedding import ClipEncoder
    from agent.fleet.runtime import FleetRuntime
    from agent.matching.matcher import Matcher
    from agent.pose.assembly import PoseStage
    from agent.pose.cue_matcher import CueFusion, CueMatcher
    from agent.rerank import RerankService
    from agent.tracking.reassociation import Embedder
    from agent.zones import ZoneBook

log = logging.getLogger(__name__)

NO_MODEL_HINT = (
    "standing queries are not evaluated: no CLIP model is configured. Export one with "
    "`watchword export clip --model DIR_OR_ID --out models/clip` and set matching.embedder.model_dir "
    "in the config; detection and tracking run as usual."
)


# SIGINT/SIGTERM must end the process within 5 s: the pipeline's own shutdown takes up to ~2.5 s.
CLOSE_BUDGET_S = 2.0


def _reassociation_embedder(config: AgentConfig, encoder: ClipEncoder | None) -> Embedder | None:
    """The CLIP crop embedder for tracker re-association when the config asks for it (identity)."""
    if config.tracker.reassociation.appearance != "clip":
        return None
    if encoder is None:
        log.warning(
            "tracker.reassociation.appearance is clip but matching.embedder is not set: colour is used"
        )
        return None
    return encoder.embed_images


def _detector_version(config: AgentConfig) -> str:
    detector = config.detector
    return detector.type if detector.model is None else f"{detector.type}:{detector.model.name}"


class StartupError(RuntimeError):
    """A configured part that cannot start (model export refused, API port taken); the message says which."""


def _lock_state(config: AgentConfig) -> StateLock:
    """Take the state-directory lock or fail the start naming the running agent's pid."""
    try:
        return lock_agent_state(config)
    except StateLockError as exc:
        raise StartupError(str(exc)) from exc


def _open_state(config: AgentConfig, fleet: FleetRuntime | None = None) -> tuple[QueryRegistry, AlertManager]:
    """Open the query registry and the alerts database; a file that is not usable stops the start."""
    try:
        registry = QueryRegistry(config.database)
    except QueryError as exc:
        raise StartupError(f"database: {exc}") from exc
    try:
        extra = () if fleet is None else fleet.sinks()
        return registry, AlertManager(config.alerts, config.site, extra_sinks=extra)
    except (OutboxError, sqlite3.Error, OSError) as exc:
        registry.close()
        raise StartupError(f"alerts.database {config.alerts.database}: {exc}") from exc


class Agent:
    """The running agent. ``run()`` blocks until the input ends, a limit is hit, or ``stop()``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        jsonl_path: Path | None = None,
        video_dir: Path | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        state_lock: StateLock | None = None,
        detector: DetectorLoader | None = None,
    ) -> None:
        self.config = config
        self.started_at = time.time()
        # --- reliability (harden): one agent per state directory, locked before anything is written
        # (``watchword run`` takes the lock itself, to start loading the detector right after it)
        try:
            self._state_lock = state_lock or _lock_state(config)
        except StartupError:
            if detector is not None:
                detector.close()
            raise
        # The detector loads on a thread while everything below starts (agent/detection/loader.py).
        # A lock or loader handed in belongs to the agent from here on: it releases and closes them.
        self._detector_loader = detector or DetectorLoader(config.detector, config.state_dir)
        self.fleet = None
        if config.fleet is not None:  # NATS loads only for a fleet site (~0.1 s of imports)
            from agent.fleet.runtime import FleetRuntime

            self.fleet = FleetRuntime.for_agent(config)
        try:
            self.registry, self.alerts = _open_state(config, self.fleet)
        except StartupError:
            self._detector_loader.close()
            self._state_lock.release()
            raise
        # --- end reliability
        # cameras from the state database, feedback, search and live view (agent/console)
        self.console = ConsoleRuntime(config)
        config = self.config = self.console.config
        self.encoder: ClipEncoder | None = None
        self.matcher: Matcher | None = None
        self.rerank: RerankService | None = None
        self.api: ApiServer | None = None
        self.auth_lockout: AuthLockout | None = None
        self.decisions: DecisionCore | None = None
        self.digest: list[str] = []
        analyzers: list[Analyzer] = []
        # --- pose cues (pose): the config's standing queries, MoveNet per track, cue mappings
        self.pose: PoseStage | None = None
        self.cue_matcher: CueMatcher | None = None
        try:
            register_startup_queries(self.registry, config.queries)
        except QueryError as exc:
            self.close()
            raise StartupError(f"queries: {exc}") from exc
        if config.pose is not None and config.pose.enabled:
            from agent.pose.assembly import build_pose_stage

            try:
                self.pose = build_pose_stage(config.pose, self.registry, config.state_dir)
            except Exception as exc:  # a model that cannot be converted or loaded stops the start
                self.close()
                raise StartupError(f"pose: {exc}") from exc
            analyzers.append(self.pose.analyzer)
        # --- end pose cues
        if config.matching.embedder is not None:
            from agent.embedding import ClipEncoder
            from agent.matching.matcher import Matcher

            try:
                self.encoder = ClipEncoder.from_config(config.matching.embedder)
            except Exception as exc:  # manifest, engine or export errors all stop the start
                self.close()
                raise StartupError(f"matching.embedder: {exc}") from exc
            self.matcher = Matcher(
                config.matching,
                self.encoder,
                self.registry,
                model_versions={"detector": _detector_version(config)},
                cue_fusion=self._cue_fusion(),
                exemplars=self.console.exemplars,
                on_samples=self.console.on_samples,
            )
            self.console.attach_matching(self.encoder, self.registry)
            analyzers.append(self.matcher)
        elif self.pose is not None and config.pose is not None:
            from agent.pose.cue_matcher import CueMatcher

            self.cue_matcher = CueMatcher(
                config.matching,
                config.pose,
                self.pose.analyzer,
                self.pose.cues,
                model_versions={"detector": _detector_version(config)},
            )
            analyzers.append(self.cue_matcher)
            log.warning(self.pose.startup_message(clip=False))
        else:
            log.warning(NO_MODEL_HINT)
        if self.pose is not None:  # pose cues: the start's mappings are made; the model is reloaded on demand
            self.pose.release_sentence_model()
        producer = self.matcher or self.cue_matcher
        if producer is not None:
            producer.zones = self._zones()
            # the one decision core, fed each frame's record after the producers' samples; the
            # alert manager only emits what it decides, on its own thread
            self.decisions = DecisionCore(
                config.matching,
                config.alerts,
                producer.query,
                self.alerts.post,
                queue_clock=time.monotonic,
                model_versions=producer.model_versions,
                evidence=producer.evidence,
            )
            analyzers.append(self.decisions)
        if self.console.live is not None:
            analyzers.append(self.console.live)
        self.pipeline = Pipeline(
            config,
            jsonl_path=jsonl_path,
            video_dir=video_dir,
            max_frames=max_frames,
            duration_s=duration_s,
            analyzers=analyzers,
            appearance_embedder=_reassociation_embedder(config, self.encoder),
            keep_running=self.console.keep_running,
            detector=self._detector_loader,
        )

    def _zones(self) -> ZoneBook:
        """The cameras' zones: the runtime camera store's (edited from the console), else the config's."""
        from agent.zones import ZoneBook

        store = getattr(self.console, "cameras", None)
        if store is None:
            return ZoneBook.fixed(list(self.config.cameras))
        return ZoneBook(store.list_cameras, store.revision)

    def _cue_fusion(self) -> CueFusion | None:
        """Pose cues blended into CLIP's scores, when both are configured (pose)."""
        if self.pose is None or self.config.pose is None:
            return None
        from agent.pose.cue_matcher import CueFusion

        if self.encoder is not None:
            self.pose.vocabulary.add_encoder("clip", self.encoder.embed_texts)
        log.info(self.pose.startup_message(clip=True))
        return CueFusion(self.pose.analyzer, self.pose.cues, self.config.pose.cue_weight)

    # --- stages after matching -------------------------------------------------------------

    def _start_rerank(self) -> None:
        if not self.config.rerank.enabled:
            return
        from agent.rerank import RerankService
        from agent.rerank.backends.base import LmmError

        embed_texts = self.encoder.embed_texts if self.encoder is not None else None
        try:
            self.rerank = RerankService.from_config(self.config.rerank, embed_texts)
        except LmmError as exc:
            raise StartupError(f"rerank.backend: {exc}") from exc
        if self.pose is not None:  # pose cues: the posture is context for the verdict turn only
            from agent.pose.context import posture_context

            self.rerank.reranker.context_for = posture_context

    def _api_endpoint(self) -> tuple[str, str | None] | None:
        """The running API's URL and token (the fleet tries the hub's query drafts through it)."""
        return None if self.api is None else (self.api.url, self.config.api.resolved_token())

    def _start_api(self) -> None:
        if not self.config.api.enabled:
            return
        from agent.api.app import ApiContext, create_app
        from agent.api.config import is_loopback
        from agent.api.lockout import AuthLockout
        from agent.api.server import ApiServer

        token = self.config.api.resolved_token()
        if token is None:
            log.warning("the API has no token: anyone on this machine can use it (set api.token)")
        context = ApiContext(
            registry=self.registry,
            token=token,
            health=self.health,
            metrics=self.metrics,
            alerts=self.alerts,
            evidence_dir=self.config.alerts.evidence_dir,
            page_limit=self.config.api.page_limit,
            cameras=lambda: frozenset(c.id for c in self.console.cameras.list_cameras()),
            zone_names=lambda: frozenset(
                z.name for c in self.console.cameras.list_cameras() for z in c.zones
            ),
            max_body_bytes=self.config.api.max_body_bytes,
            loopback_only=is_loopback(self.config.api.host),
            cue_mapping=None if self.pose is None else self.pose.mapping_view,
            console=self.console.services(token),
            auth_lockout=AuthLockout(self.config.api.auth_lockout),
        )
        self.auth_lockout = context.auth_lockout
        self.api = ApiServer(create_app(context), self.config.api.host, self.config.api.port, self.config.api)
        try:
            self.api.start()
        except RuntimeError as exc:
            self.api = None
            raise StartupError(f"api: {exc}") from exc

    # --- run -------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        self.pipeline.stop(reason)

    @property
    def stopping(self) -> bool:
        return self.pipeline.stopping

    def run(self) -> RunSummary:
        self.alerts.start()
        try:
            self._start_rerank()
            if self.rerank is not None and self.decisions is not None:
                from agent.decision.verifier import LmmWorker

                self.decisions.verifier = LmmWorker(self.rerank)
            self.console.start(self.pipeline, self.alerts, lambda: self.health()["cameras"])
            if self.fleet is not None:  # the fleet (agent/fleet): heartbeat, fleet queries, hub reviews
                self.fleet.start(self.registry, self.health, self.console.review_mark, self._api_endpoint)
            self._start_api()
            return self.pipeline.run()
        finally:
            self.digest = self._alert_digest()
            self.close()

    def _alert_digest(self) -> list[str]:
        """End-of-run lines: alerts this run raised per query, where their evidence is (the run summary)."""
        from agent.alerts.digest import alert_digest

        unevaluated = []
        if self.matcher is None and self.pose is not None:
            unevaluated = [f"{q.id} {q.text!r}" for q, _ in self.pose.cues.unmapped()]
        try:
            opened, latest = self.alerts.opened_this_run()
        except Exception as exc:  # the summary never hides the run's own outcome
            return [f"alerts: cannot list them: {exc}"]
        return alert_digest(opened, latest, self.config.alerts.evidence_dir, unevaluated)

    def close(self, budget_s: float = CLOSE_BUDGET_S) -> None:
        """Stop in dependency order within ``budget_s`` seconds: candidates, re-ranker, API, alerts, models.

        Alerts not delivered in time stay in the durable outbox and go out after the next start.
        """
        deadline = time.monotonic() + budget_s

        def remaining(share: float) -> float:
            return max(0.0, min(share, deadline - time.monotonic()))

        if self.decisions is not None:  # the video loop has ended: this thread may feed the core
            self.decisions.finish(timeout_s=remaining(1.0))
            self.decisions.close(timeout_s=remaining(0.5))  # and the re-ranker beside it
        if self.rerank is not None and (self.decisions is None or self.decisions.verifier is None):
            self.rerank.close(timeout_s=remaining(0.5))
        self.console.close()  # first: it ends the open event streams the API would wait for
        if self.api is not None:
            self.api.stop(timeout_s=remaining(1.0))
        # Half of what is left drains the sinks, the other half stops them all at once (hung receivers).
        left = remaining(budget_s)
        self.alerts.close(drain_timeout_s=left / 2, stop_timeout_s=left / 2)
        if self.fleet is not None:
            self.fleet.close(timeout_s=remaining(0.5))
        if self.encoder is not None:
            self.encoder.close()
            self.encoder = None
        if self.pose is not None:
            self.pose.analyzer.close()
            self.pose = None
        self._detector_loader.close()  # the pipeline closed it after a run; not after a failed start
        self.registry.close()
        self._state_lock.release()

    # --- health and metrics ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The /health document: cameras, sinks, storage and LMM (see :mod:`agent.health_report`)."""
        return build_health(
            site=self.config.site,
            started_at=self.started_at,
            queries_evaluated=self.matcher is not None or self.cue_matcher is not None,
            cameras=self.pipeline.status(),
            alerts=self.alerts,
            rerank=self.rerank,
            storage_folders=self.storage_folders(),
            candidates_queued=0 if self.decisions is None else self.decisions.stats().queue.queued,
            engines=self.engine_health(),
        ) | ({} if self.fleet is None else {"fleet": self.fleet.status()})

    def storage_folders(self) -> dict[str, Path]:
        """The folders that hold state, by the config key that names them (health and metrics)."""
        return {
            "alerts.database": self.config.alerts.database.parent,
            "alerts.evidence_dir": self.config.alerts.evidence_dir,
            "state_dir": self.config.state_dir,
        }

    def engine_health(self) -> list[dict[str, Any]]:
        """Each model's engine state (detector, CLIP encoder), as the components report it."""
        encoder = [self.encoder.health()] if self.encoder is not None else []
        return [*self.pipeline.engine_health(), *[{"model": "clip", **e} for e in encoder]]

    def engine_warnings(self) -> list[str]:
        """One line per engine running degraded (off the device its config asks for)."""
        return [
            f"DEGRADED {e.get('detector') or e.get('model')}: {e['reason']}"
            for e in self.engine_health()
            if e.get("reason")
        ]

    def metrics(self) -> str:
        """The /metrics text: each running component's own metrics, concatenated (see ``metrics()``
        of the pipeline, matchers, pose, candidate queue, re-ranker, alerts, registry, search index
        and API), and the free space of the filesystems that hold state."""
        from agent.api.metrics import MetricSource, render

        components: list[MetricSource | None] = [
            self.pipeline,
            self.matcher,
            self.cue_matcher,
            None if self.pose is None else self.pose.analyzer,
            self.decisions,
            self.rerank,
            self.alerts,
            self.registry,
            self.console,
            self.api,
            self.auth_lockout,
        ]
        parts = [
            metric for component in components if component is not None for metric in component.metrics()
        ]
        return render([*parts, *storage_metrics(self.storage_folders())])
