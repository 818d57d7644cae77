"""The alert manager: episode events -> evidence -> durable outbox -> sinks. It only emits.

What opens, updates and closes an alert is decided by the decision core
(:class:`~agent.decision.core.DecisionCore`); its events come here through :meth:`AlertManager.post`,
a queue that one emission thread empties (evidence JPEGs, the synced outbox write, hold-back on a
full disk, retention), so the video loop never waits on this manager's lock. :meth:`emit` does the
same on the caller's thread and returns once the event is in the outbox (SQLite, synced), so an
acknowledged event survives a crash. Delivery runs on one thread per sink.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

from agent.alerts.clip import CLIP_FILE
from agent.alerts.config import AlertsConfig, RetryConfig
from agent.alerts.delivery import DeliveryCounters, DeliveryWorker, stop_workers
from agent.alerts.episodes import AlertEvent, AlertEventKind, EpisodeCounters
from agent.alerts.evidence import EvidenceError, EvidencePaths, EvidenceStore
from agent.alerts.health import AlertsSnapshot, SinkSnapshot, alerts_health
from agent.alerts.holdback import HoldBack, StorageCounters
from agent.alerts.outbox import Outbox
from agent.alerts.payload import build_payload, closed_after_restart
from agent.alerts.sinks import Sink, build_sink
from agent.api.metrics import Metric

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.05
STOP_TIMEOUT_S = 2.0
HOUSEKEEPING_S = 1.0  # the emission thread flushes the hold-back and checks retention this often


@dataclass
class AlertStats:
    """Counts for metrics: events emitted by kind (``episodes``: opened, updated, closed), errors,
    and per sink the backlog and delivery counts."""

    episodes: EpisodeCounters
    open_episodes: int
    enqueue_errors: int
    evidence_errors: int
    backlog: dict[str, int]
    sinks: dict[str, DeliveryCounters] = field(default_factory=dict)
    storage: StorageCounters = field(default_factory=StorageCounters)

    def metrics(self) -> list[Metric]:
        """Alert events emitted, each sink's deliveries and backlog, and what the storage refused."""
        backlog = Metric(
            "watchword_sink_backlog", "gauge", "Alert events waiting for a sink's acknowledgement"
        )
        for sink, pending in self.backlog.items():
            backlog.add(pending, sink=sink)
        deliveries = [metric for sink, counters in self.sinks.items() for metric in counters.metrics(sink)]
        return [*self.episodes.event_metrics(), *deliveries, backlog, *self.storage.metrics()]


@dataclass
class _Bundle:
    paths: EvidencePaths | None
    crop_size: tuple[int, int] | None = None  # width, height in pixels
    pose: dict[str, Any] | None = None  # the latest behaviour-cue evidence (pose cues)
    pose_at_open: dict[str, Any] | None = None  # ... and that of the candidate that opened the alert


class AlertManager:
    """Stores alert events with their evidence and delivers them (see the module docstring).

    Args:
        config: the alerts config.
        site: the site name put into every payload and MQTT topic.
        clock: UNIX-seconds clock for retention, hold-back and delivery times.
        sinks: sinks to use instead of the configured ones (each with ``retry``).
        retry: backoff for ``sinks``; configured sinks use their own ``retry``.
        extra_sinks: sinks added to either, each with its own backoff (the fleet's).

    Call :meth:`start` (or use it as a context manager) before emitting; :meth:`close` at the end.
    Constructing it opens (and creates or upgrades) the database but connects to nothing.
    """

    def __init__(
        self,
        config: AlertsConfig,
        site: str,
        *,
        clock: Callable[[], float] = time.time,
        sinks: Sequence[Sink] | None = None,
        retry: RetryConfig | None = None,
        extra_sinks: Sequence[tuple[Sink, RetryConfig]] = (),
    ) -> None:
        self.config = config
        self.site = site
        self.clock = clock
        self.outbox = Outbox(config.database)
        self.evidence = EvidenceStore(
            config.evidence_dir, crop_padding=config.crop_padding, jpeg_quality=config.jpeg_quality
        )
        # media seconds after an alert opens when its clip exists: set by the clip recorder's owner
        # (the console); None: no clip is recorded, and payloads name none
        self.clip_after_s: float | None = None
        self.emitted = EpisodeCounters()  # opened, updated, closed: the events emitted
        self._open_alerts: set[str] = set()
        self._posted: deque[AlertEvent] = deque()
        self._post_cond = threading.Condition()
        self._emitting = False
        self._emitter: threading.Thread | None = None
        self._stop_emitter = False
        if sinks is None:
            pairs = [(build_sink(sink_config), sink_config.retry) for sink_config in config.sinks]
        else:
            pairs = [(sink, retry or RetryConfig()) for sink in sinks]
        pairs += list(extra_sinks)
        if len({sink.name for sink, _ in pairs}) != len(pairs):
            raise ValueError("sink names must be unique")
        self.workers = [DeliveryWorker(self.outbox, sink, policy, clock=clock) for sink, policy in pairs]
        self.sink_names = [sink.name for sink, _ in pairs]
        self._lock = threading.RLock()
        self._bundles: dict[str, _Bundle] = {}
        self.holdback = HoldBack(
            self._store, capacity=config.memory_buffer_events, on_failure=self._free_space
        )
        self._last_prune = float("-inf")
        self._started = False
        self._closed = False
        self._run_after_row: int | None = None  # the outbox's last row before this run's events

    # --- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Close alerts a previous run left open, apply retention, start the delivery threads."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._run_after_row = self.outbox.last_row()
            for last in self.outbox.unclosed():
                payload = closed_after_restart(last)
                log.info("alert %s: left open by the previous run; closing it", last["alert_id"])
                self._enqueue(payload)
                self._record_restart_close(payload)
            self.prune()
        unknown = set(self.outbox.backlog()) - set(self.sink_names)
        for name in sorted(unknown):
            log.warning("outbox: events pending for sink %r, which is no longer configured", name)
        for worker in self.workers:
            worker.start()
        self._emitter = threading.Thread(target=self._run_emitter, name="alert-emitter", daemon=True)
        self._emitter.start()
        log.info("alerts: started with sinks %s, backlog %s", self.sink_names, self.backlog())

    @property
    def running(self) -> bool:
        """Started and not closed: the delivery threads should be alive."""
        return self._started and not self._closed

    def close(self, drain_timeout_s: float | None = None, stop_timeout_s: float | None = None) -> None:
        """Emit what was posted, give the sinks ``drain_timeout_s`` (default: the config's) to
        deliver, stop.

        The delivery threads are stopped together, all within ``stop_timeout_s``. What is not
        delivered by then stays in the outbox and is sent after the next start.
        """
        self._stop_emission()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.holdback.flush(force=True)
            self.holdback.drop_all()
        if self._started:
            self.drain(self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s)
        stop_workers(self.workers, STOP_TIMEOUT_S if stop_timeout_s is None else stop_timeout_s)
        left = self.outbox.backlog(self.sink_names)
        if any(left.values()):
            log.info("alerts: %s events still pending; they are sent after the next start", left)
        self.outbox.close()

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until no running sink has pending events; True if none has."""
        deadline = time.monotonic() + timeout_s
        while True:
            backlog = self.outbox.backlog()
            if not any(backlog.get(w.sink.name, 0) for w in self.workers if w.alive):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(DRAIN_POLL_S)

    # --- input -------------------------------------------------------------------------------

    def post(self, events: Iterable[AlertEvent]) -> None:
        """Queue events for the emission thread; returns at once (the video loop calls this).

        Before :meth:`start` or after :meth:`close` they are emitted on the caller's thread.
        """
        events = list(events)
        with self._post_cond:
            running = self._emitter is not None and not self._stop_emitter
            if running:
                self._posted.extend(events)
                self._post_cond.notify_all()
                return
        for event in events:
            self.emit(event)

    def wait_emitted(self, timeout_s: float) -> bool:
        """Block until every posted event is emitted (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._post_cond:
            while self._posted or self._emitting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._post_cond.wait(remaining)
            return True

    def _run_emitter(self) -> None:
        """The emission thread: posted events, and about once a second the hold-back and retention."""
        while True:
            with self._post_cond:
                if not self._posted and not self._stop_emitter:
                    self._post_cond.wait(HOUSEKEEPING_S)
                if not self._posted and self._stop_emitter:
                    return
                events = list(self._posted)
                self._posted.clear()
                self._emitting = True
            try:
                for event in events:
                    self.emit(event)
                self.tick()
            except Exception:  # one bad event must not stop the emission of the others
                log.exception("alerts: emitting failed")
            finally:
                with self._post_cond:
                    self._emitting = False
                    self._post_cond.notify_all()

    def _stop_emission(self) -> None:
        """Emit what is posted, then stop the emission thread."""
        with self._post_cond:
            self._stop_emitter = True
            self._post_cond.notify_all()
            emitter = self._emitter
        if emitter is not None:
            emitter.join(STOP_TIMEOUT_S)
            if emitter.is_alive():
                log.warning("alerts: the emission thread is still writing after %.1f s", STOP_TIMEOUT_S)
        with self._post_cond:
            left, self._posted = list(self._posted), deque()
        for event in left:
            self.emit(event)

    def emit(self, event: AlertEvent) -> bool:
        """Store one event with its evidence in the outbox (or hold it back); False if it could not
        be stored. Runs on the caller's thread under the manager's lock."""
        with self._lock:
            counted = {
                AlertEventKind.OPENED: "opened",
                AlertEventKind.UPDATED: "updated",
                AlertEventKind.CLOSED: "closed",
            }[event.kind]
            setattr(self.emitted, counted, getattr(self.emitted, counted) + 1)
            if event.kind is AlertEventKind.CLOSED:
                self._open_alerts.discard(event.alert_id)
            else:
                self._open_alerts.add(event.alert_id)
            return self._emit(event)

    def tick(self) -> None:
        """Flush the hold-back and, every ``prune_interval_s``, apply retention (wall clock)."""
        now = self.clock()
        with self._lock:
            self.holdback.flush()
            if now - self._last_prune >= self.config.prune_interval_s:
                self.prune()

    def prune(self) -> None:
        """Apply the retention limits to evidence bundles and to the delivered alert history."""
        with self._lock:
            now = self.clock()
            self._last_prune = now
            keep = self._undelivered_alerts()
            try:
                self.evidence.prune(
                    retention_days=self.config.retention_days,
                    retention_bytes=self.config.retention_bytes,
                    keep=keep,
                    now=now,
                )
            except OSError as exc:
                log.error("evidence retention failed: %s", exc)
            if self.config.retention_days is not None:
                try:
                    deleted = self.outbox.prune(now - self.config.retention_days * 86400.0)
                except sqlite3.Error as exc:
                    log.error("alert history retention failed: %s", exc)
                else:
                    if deleted:
                        log.info("alert history: deleted %d events past retention", deleted)

    # --- output ------------------------------------------------------------------------------

    def _emit(self, event: AlertEvent) -> bool:
        """Write evidence, build the payload and enqueue it; False if it could not be stored."""
        alert_id = event.alert_id
        bundle = self._bundles.get(alert_id)
        if event.kind is AlertEventKind.OPENED and event.candidate is not None:
            bundle = _Bundle(None)
            try:
                label = f"{event.episode.query_text} {event.candidate.final_score:.2f}"
                bundle.paths = self.evidence.write_images(alert_id, event.candidate, label)
                if self.clip_after_s is not None:  # a clip recorder runs: name its clip ahead
                    bundle.paths = replace(
                        bundle.paths, clip=f"{alert_id}/{CLIP_FILE}", clip_after_s=self.clip_after_s
                    )
                crop = event.candidate.crop(self.config.crop_padding)
                bundle.crop_size = (int(crop.shape[1]), int(crop.shape[0]))
            except (EvidenceError, ValueError) as exc:
                self.holdback.counters.evidence_errors += 1
                log.error("alert %s: no evidence images: %s", alert_id, exc)
            self._enforce_byte_cap(alert_id)
            self._bundles[alert_id] = bundle
        payload = build_payload(event, self.site, None if bundle is None else bundle.paths)
        if bundle is not None and bundle.paths is not None:
            self._write_record(event, payload, bundle)
        if event.kind is AlertEventKind.CLOSED:
            self._bundles.pop(alert_id, None)
        return self._enqueue(payload)

    def _enforce_byte_cap(self, new_alert_id: str) -> None:
        """After a bundle is written: delete the oldest delivered bundles while over the byte cap.

        Evidence of an alert not yet delivered to every sink is kept even past the cap.
        """
        if self.config.retention_bytes is None:
            return
        try:
            self.evidence.prune(
                retention_days=None,
                retention_bytes=self.config.retention_bytes,
                keep=self._undelivered_alerts() | {new_alert_id},
                now=self.clock(),
            )
        except OSError as exc:
            log.error("evidence byte cap: %s", exc)

    def _write_record(self, event: AlertEvent, payload: dict[str, Any], bundle: _Bundle) -> None:
        latest = event.episode.latest
        record = {
            "alert": payload,
            "score_history": [[round(t, 3), round(s, 4)] for t, s in latest.score_history],
            "model_versions": payload["model_versions"],
            "rationale": payload["rationale"],
            "crop_padding": self.config.crop_padding,
            "crop_size": None if bundle.crop_size is None else list(bundle.crop_size),
        }
        if event.candidate is not None:
            record["frame_size"] = [int(event.candidate.frame.shape[1]), int(event.candidate.frame.shape[0])]
        if event.candidate is not None and event.candidate.pose is not None:
            bundle.pose = event.candidate.pose
            bundle.pose_at_open = bundle.pose_at_open or event.candidate.pose
        if bundle.pose is not None:  # behaviour cues: values, evidence, history, keypoints
            record["pose"] = bundle.pose
            record["pose_at_open"] = bundle.pose_at_open
        try:
            self.evidence.write_record(event.alert_id, record)
        except (EvidenceError, ValueError) as exc:
            self.holdback.counters.evidence_errors += 1
            log.error("alert %s: evidence record not written: %s", event.alert_id, exc)

    def _record_restart_close(self, payload: dict[str, Any]) -> None:
        """Point an interrupted alert's evidence record at its closing event."""
        if not payload.get("evidence"):
            return
        try:
            record = self.evidence.read_record(payload["alert_id"])
            if record is not None:
                self.evidence.write_record(payload["alert_id"], {**record, "alert": payload})
        except (EvidenceError, ValueError) as exc:
            self.holdback.counters.evidence_errors += 1
            log.error("alert %s: evidence record not updated: %s", payload["alert_id"], exc)

    def _enqueue(self, payload: dict[str, Any]) -> bool:
        """Store ``payload`` in the outbox, or hold it in memory until the outbox takes it."""
        return self.holdback.put(payload)

    def _store(self, payload: dict[str, Any]) -> None:
        self.outbox.enqueue(payload, self.sink_names, created_at=self.clock())
        for worker in self.workers:
            worker.wake()

    def _free_space(self) -> None:
        """After a failed outbox write: shrink the database log, delete the oldest delivered evidence."""
        self.outbox.compact()
        try:
            self.evidence.prune_oldest(keep=self._undelivered_alerts())
        except OSError as exc:
            log.debug("evidence: pruning to free space failed: %s", exc)

    def _undelivered_alerts(self) -> set[str]:
        """Alerts whose evidence must stay: open, held in memory, or not yet delivered to every sink."""
        keep = set(self._open_alerts)
        keep.update(str(p.get("alert_id")) for p in self.holdback.held())
        try:
            keep.update(self.outbox.undelivered_alert_ids())
        except sqlite3.Error as exc:
            log.debug("outbox: cannot list undelivered alerts: %s", exc)
        return keep

    # --- queries -----------------------------------------------------------------------------

    def backlog(self) -> dict[str, int]:
        """Pending events per configured sink."""
        counts = self.outbox.backlog(self.sink_names)
        return {name: counts[name] for name in self.sink_names}

    def recent(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        camera: str | None = None,
        query_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """The latest payload of each alert, newest first (see :meth:`Outbox.recent`)."""
        return self.outbox.recent(
            limit=limit, offset=offset, camera=camera, query_id=query_id, since=since, until=until
        )

    def opened_this_run(self) -> tuple[list[tuple[int, str, int]], dict[str, Any] | None]:
        """Alerts this manager opened since :meth:`start` and stored: per query (query id, query text,
        alerts), and the newest one's latest payload. Not the alerts of earlier runs in the history."""
        if self._run_after_row is None:
            return [], None
        row = self._run_after_row
        return self.outbox.opened_after(row), self.outbox.latest_opened_after(row)

    def get(self, alert_id: str) -> list[dict[str, Any]]:
        """Every event of one alert, in order; empty if unknown."""
        return self.outbox.events(alert_id)

    def dead_letters(
        self, *, sink: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Events a sink refused for good (see :meth:`Outbox.dead_letters`)."""
        return self.outbox.dead_letters(sink=sink, limit=limit, offset=offset)

    def retry_dead_letters(self, *, sink: str | None = None, event_row: int | None = None) -> int:
        """Queue dead letters again and wake the sinks; return how many were queued."""
        count = self.outbox.retry_dead_letters(sink=sink, event_row=event_row)
        for worker in self.workers:
            worker.wake()
        return count

    def health(self) -> dict[str, Any]:
        """Sinks and storage with a status of ok or degraded (see :func:`alerts_health`)."""
        return alerts_health(self.health_snapshot())

    def health_snapshot(self) -> AlertsSnapshot:
        """Copies of the storage and delivery counters, the dead letters and the backlog per sink."""
        running = self.running
        sinks = [
            SinkSnapshot(worker.sink.name, replace(worker.counters), running and not worker.alive)
            for worker in self.workers
        ]
        storage = replace(self.holdback.counters)
        try:
            dead, backlog = self.outbox.dead_letter_counts(), self.backlog()
        except sqlite3.Error as exc:
            return AlertsSnapshot(storage, sinks, database_error=str(exc))
        return AlertsSnapshot(storage, sinks, dead, backlog)

    def metrics(self) -> list[Metric]:
        """The numbers of :meth:`stats` as metrics (:meth:`AlertStats.metrics`)."""
        return self.stats().metrics()

    def stats(self) -> AlertStats:
        """Episode counts, error counts, backlog and delivery counts per sink."""
        with self._lock:
            episodes, open_episodes = replace(self.emitted), len(self._open_alerts)
        return AlertStats(
            episodes=episodes,
            open_episodes=open_episodes,
            enqueue_errors=self.holdback.counters.enqueue_errors,
            evidence_errors=self.holdback.counters.evidence_errors,
            backlog=self.backlog(),
            sinks={w.sink.name: replace(w.counters) for w in self.workers},
            storage=replace(self.holdback.counters),
        )
