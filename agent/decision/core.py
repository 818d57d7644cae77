"""The decision core: every decision between a sample and an alert, in one place, on one thread.

Fed one :class:`~agent.decision.records.FrameRecord` at a time (the live agent: each analysed frame
after the producers; ``watchword eval replay --frames``: each line of a recording), it owns

* the pooled (track, query) scores with hysteresis (:class:`~agent.matching.trackbook.TrackBook`);
* a window clock per camera, on that camera's media time, and fair selection at each window;
* the one candidate queue in front of the LMM stage (:mod:`agent.decision.queue`);
* what the LMM said (:mod:`agent.decision.verdicts`): a rejected person is not sent again for that
  query until the rejection cooldown passes or their score rises by the margin;
* episodes and cooldowns (:class:`~agent.alerts.episodes.EpisodeTracker`), and the lifecycle of
  cameras: a camera changed or removed ends its people, closes its episodes and drops its state.

The LMM runs beside it (:mod:`agent.decision.verifier`): a batch goes out when the stage has room,
its decisions come back through an inbox the core applies at its next record. The alert events it
makes go to ``emit`` (the alert manager's emission queue, or a list in a replay); the core never
waits on the alert manager.

Clocks: windows, pooling, episodes, cooldowns and rejections run on each camera's media time (the
record's ``media_time``: a file's pts, a live camera's wall time). The queue's deadline runs on
``queue_clock`` (live: monotonic seconds) or, without one, on each candidate's own camera's media
time (a replay). The LMM budget runs on the stage's clock (live: monotonic; a replay: the
:class:`RunClock`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, CloseReason, EpisodeKey, EpisodeTracker
from agent.api.metrics import Metric
from agent.decision.peaks import PeakFrames
from agent.decision.queue import CandidateQueue, Entry, PendingKey, QueueStats
from agent.decision.records import FrameRecord
from agent.decision.verdicts import VerdictBook
from agent.matching.config import MatchingConfig
from agent.matching.scoring import PoolingParams
from agent.matching.selection import Pick
from agent.matching.stage import CandidateStage, Decision
from agent.matching.trackbook import TrackBook
from agent.queries import Query
from agent.types import Candidate, FrameResult

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 1.0  # quiet episodes are looked for about once a media second per camera
OVERFLOW_LOG_EVERY = 100


class Verifier(Protocol):
    """The LMM stage beside the core (:class:`~agent.decision.verifier.LmmWorker` or the inline one)."""

    stage: CandidateStage

    def capacity(self) -> int: ...

    def submit(self, candidates: list[Candidate], waited: list[float]) -> None: ...

    def collect(self) -> list[Decision]: ...

    def wait_idle(self, timeout_s: float) -> bool: ...

    def close(self, timeout_s: float) -> None: ...


class EvidenceHook(Protocol):
    """Behaviour-cue evidence for a candidate (``CueFusion.evidence``, ``CueMatcher.evidence``)."""

    def __call__(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None
    ) -> dict[str, Any] | None: ...


class RunClock:
    """Seconds of the run so far on the cameras' media clocks: the largest media time any camera
    has advanced since its first record. A replay's LMM budget runs on it (one clock for one LMM,
    whatever each camera's pts origin)."""

    def __init__(self) -> None:
        self._first: dict[str, float] = {}
        self.now = 0.0

    def advance(self, camera_id: str, media_time: float) -> None:
        first = self._first.setdefault(camera_id, media_time)
        self.now = max(self.now, media_time - first)

    def forget(self, camera_id: str) -> None:
        self._first.pop(camera_id, None)

    def __call__(self) -> float:
        return self.now


@dataclass
class CoreStats:
    """Counts since start (a snapshot: :meth:`DecisionCore.stats`)."""

    records: int = 0
    windows: int = 0
    candidates: int = 0
    updates: int = 0
    sent: int = 0  # candidates handed to the LMM stage
    decided: int = 0
    failed: int = 0
    rejected: int = 0
    held_rejected: int = 0  # candidacies a remembered rejection prevented
    overflow: int = 0  # opens dropped from the full queue, passed on unverified
    discarded: int = 0  # queued or in flight for a camera that ended, or at close
    cameras_ended: int = 0
    queue: QueueStats = field(default_factory=QueueStats)


class DecisionCore:
    """See the module docstring.

    Args:
        matching: pooling, windows, ``top_k``, the queue size and the rejection memory.
        alerts: cooldowns, quiet time, update interval and the verification policy of episodes.
        query: a query by id (the producer's current queries live; the replay's registry).
        emit: receives the alert events of each record (must not block for long).
        verifier: the LMM stage beside the core (None: opens are accepted as they are).
        queue_clock: seconds the queue's deadline runs on (None: each camera's media time).
        model_versions: recorded in every candidate.
        evidence: behaviour-cue evidence attached to each candidate (pose cues).
        run_clock: the :class:`RunClock` to advance (a replay's stage reads it).
        on_decision: sees every candidate the stage passed back (decided, expired, overflowed)
            before the episodes do (tools and tests).
    """

    def __init__(
        self,
        matching: MatchingConfig,
        alerts: AlertsConfig,
        query: Callable[[int], Query | None],
        emit: Callable[[list[AlertEvent]], None],
        *,
        verifier: Verifier | None = None,
        queue_clock: Callable[[], float] | None = None,
        model_versions: dict[str, str] | None = None,
        evidence: EvidenceHook | None = None,
        run_clock: RunClock | None = None,
        on_decision: Callable[[Candidate], None] | None = None,
    ) -> None:
        self.matching = matching
        self.on_decision = on_decision
        self.query = query
        self.emit = emit
        self.verifier = verifier
        self.queue_clock = queue_clock
        self.model_versions = dict(model_versions or {})
        self.evidence = evidence
        self.run_clock = run_clock or RunClock()
        params = PoolingParams(matching.ema_alpha, matching.pool_window_s, matching.exit_margin)
        self.book = TrackBook(
            params, matching.window_s, matching.top_k, matching.history, matching.select_on_entry
        )
        self.episodes = EpisodeTracker(
            cooldown_s=alerts.cooldown_s,
            quiet_s=alerts.episode_quiet_s,
            update_interval_s=alerts.update_interval_s,
            require_verified=alerts.require_verified,
            unverified_policy=alerts.unverified.action,
        )
        self.verdicts = VerdictBook(matching.rejection_cooldown_s, matching.rejection_margin)
        self.queue = CandidateQueue(matching.candidate_queue, matching.top_k)
        self.counters = CoreStats()
        self._columns: dict[int, int] = {}  # query id -> column of the book
        self._adopted = False
        self._now: dict[str, float] = {}  # camera -> latest media time
        self._last_tick: dict[str, float] = {}
        self._generation: dict[str, int] = {}  # camera -> bumped when it ends
        self._in_flight: dict[PendingKey, int] = {}  # key -> its camera's generation when sent
        self._seen: dict[tuple[str, int], tuple[float, float]] = {}  # track -> last (media, wall)
        self._events: list[AlertEvent] = []
        self.peaks = PeakFrames()  # the frame where each (track, query)'s sample peaked: the evidence

    # --- feeding -----------------------------------------------------------------------------

    def process(self, results: list[FrameResult]) -> None:
        """The live agent's analyser: each frame's record, then its pooled ``scores`` for the outputs."""
        for result in results:
            self.feed(FrameRecord.from_result(result))
            ids = result.tracks.tracker_id
            result.extra["scores"] = self.book.frame_scores(
                result.frame.camera_id, [] if ids is None else ids.tolist()
            )

    def feed(self, record: FrameRecord) -> None:
        """Decide on one record: LMM decisions that came back, query columns, removed people,
        samples, the camera's window, the queue, quiet episodes, and the end of a camera."""
        camera, now = record.camera_id, record.media_time
        self.counters.records += 1
        if camera in self._now and now < self._now[camera]:
            self._last_tick.pop(camera, None)  # the camera's clock went back (a new pts origin)
        self._now[camera] = now
        self.run_clock.advance(camera, now)
        self._apply_inbox()
        if record.columns is not None or not self._adopted:
            self._adopt(record.columns)
        for track_id in record.removed:
            self._track_ended(camera, track_id, now, record.wall_time)
        for track_id in record.boxes:
            self._seen[(camera, track_id)] = (now, record.wall_time)
        for track_id, per_query in record.samples.items():
            self._sample(record, track_id, per_query)
        if self.book.window_due(camera, now):
            self._window(camera, now)
        self._serve()
        last = self._last_tick.get(camera)
        if last is None or now - last >= TICK_INTERVAL_S:
            self._last_tick[camera] = now
            self._events += self.episodes.tick(now, camera)
        if record.camera_ended:
            self._end_camera(camera, now, record.wall_time)
        self._flush()

    def offer(self, candidate: Candidate) -> None:
        """Queue an open as a window would (tools and tests that make their own candidates)."""
        self._now.setdefault(candidate.camera_id, candidate.time_s)
        self.counters.candidates += 1
        if self.verifier is None:
            self._accept(candidate, opens=True)
        else:
            for dropped in self.queue.put(candidate, self._queue_now(candidate.camera_id)):
                self._overflow(dropped)
        self.pump()

    def pump(self) -> None:
        """Between records: apply the LMM's decisions, serve the queue, emit."""
        self._apply_inbox()
        self._serve()
        self._flush()

    def _flush(self) -> None:
        events, self._events = self._events, []
        if events:
            self.emit(events)

    def _adopt(self, columns: list[tuple[int, str]] | None) -> None:
        """Take the scored queries: ``columns`` (query id, text hash) as recorded, or, for records
        without any (older recordings), every query :attr:`query` knows, by id (the replay)."""
        self._adopted = True
        if columns is None:
            known = getattr(self.query, "all", None)
            columns = [(q.id, str(q.id)) for q in (known() if known is not None else [])]
        queries: list[Query] = []
        hashes: list[str] = []
        for query_id, text_hash in columns:
            query = self.query(query_id)
            if query is not None:
                queries.append(query)
                hashes.append(text_hash)
        default = self.matching.default_threshold
        thresholds = np.array(
            [q.threshold if q.threshold is not None else default for q in queries], np.float32
        )
        self.book.set_queries(queries, thresholds, hashes)
        self._columns = {q.id: i for i, q in enumerate(queries)}
        # an edited or removed query starts afresh: its old peaks were of another text
        self.peaks.keep_queries(dict(zip((q.id for q in queries), hashes, strict=True)))

    def _sample(self, record: FrameRecord, track_id: int, per_query: dict[int, float]) -> None:
        size = len(self.book.queries)
        probability = np.full(size, np.nan, np.float64)
        cosine = np.full(size, np.nan, np.float64)
        columns = np.zeros(size, bool)
        cosines = record.cosines.get(track_id, {})
        for query_id, p in per_query.items():
            column = self._columns.get(query_id)
            if column is not None:
                probability[column], columns[column] = p, True
                cosine[column] = cosines.get(query_id, p)
        if not columns.any():
            return
        state = self.book.get(record.camera_id, track_id)
        taken = record.sample_frames.get(track_id)
        box = record.boxes.get(track_id)
        if taken is not None:
            state.frame, state.box = taken
        elif box is not None or state.frame is None:
            # a sample of a person not in this frame (a new query scored on their latest crop)
            # keeps the frame and box they were last sampled on
            state.frame = record.stand_in_frame()
            if box is not None:
                state.box = box
        for query_id, p in per_query.items():
            if query_id in self._columns and not np.isnan(p):
                self.peaks.observe(record.camera_id, track_id, query_id, p, state.frame, state.box)
        self.book.add_sample(state, record.media_time, probability, cosine, columns=columns)

    # --- selection ---------------------------------------------------------------------------

    def _window(self, camera: str, now: float) -> None:
        self.counters.windows += 1
        pending: set[PendingKey] = self.queue.pending() | set(self._in_flight)
        held_before = self.verdicts.held

        def held(key: EpisodeKey, score: float) -> bool:
            return self.verifier is not None and self.verdicts.holds(key, score, now)

        picks = self.book.select(camera, now, self.episodes.alert_state(), frozenset(pending), held)
        self.counters.held_rejected += self.verdicts.held - held_before
        for pick in picks:
            candidate = self.candidate(camera, pick, now)
            if not pick.opens:
                self.counters.updates += 1
                self._accept(candidate, opens=False)
                continue
            self.counters.candidates += 1
            if self.verifier is None:
                self._accept(candidate, opens=True)
                continue
            for dropped in self.queue.put(candidate, self._queue_now(camera)):
                self._overflow(dropped)

    def candidate(self, camera: str, pick: Pick, now: float) -> Candidate:
        """The candidate of a pick at media ``now``: the frame and box where its query's sample peaked
        (:mod:`agent.decision.peaks`; the latest sample's when none is kept), cue evidence there."""
        candidate = self.book.candidate(camera, pick, now, self.model_versions)
        query = self.book.queries[pick.column]
        state = self.book.tracks[(camera, pick.track_id)]
        frame = state.frame
        peak = self.peaks.get(camera, pick.track_id, query.id)
        if peak is not None:
            frame = peak.frame
            candidate.frame, candidate.box = frame.image, peak.box
            candidate.wall_time, candidate.frame_index = frame.wall_time, frame.index
        if self.evidence is not None:
            frame_time = frame.media_time if frame is not None else None
            candidate.pose = self.evidence(camera, pick.track_id, query, frame_time)
        return candidate

    # --- the queue and the LMM ---------------------------------------------------------------

    def _queue_now(self, camera: str) -> float:
        return self.queue_clock() if self.queue_clock is not None else self._now[camera]

    def _serve(self) -> None:
        verifier = self.verifier
        if verifier is None or not self.queue:
            return
        stage = verifier.stage
        now_of = {c: self._queue_now(c) for c in self._now}
        expired = self.queue.take_expired(stage.deadline_s, now_of)
        if expired:
            waited = [now_of[e.candidate.camera_id] - e.put_at for e in expired]
            for decision in stage.expire([e.candidate for e in expired], waited):
                self._decided(decision.candidate)
        while self.queue:
            room = verifier.capacity()
            if room <= 0:
                break
            batch = self.queue.take(room)
            for entry in batch:
                self._in_flight[entry.key] = self._generation.get(entry.candidate.camera_id, 0)
            self.counters.sent += len(batch)
            verifier.submit(
                [e.candidate for e in batch], [now_of[e.candidate.camera_id] - e.put_at for e in batch]
            )
            self._apply_inbox()  # the inline verifier has decided already

    def _overflow(self, entry: Entry) -> None:
        """An open the full queue dropped: the stage passes it on unverified (``budget``)."""
        assert self.verifier is not None
        self.counters.overflow += 1
        if self.counters.overflow % OVERFLOW_LOG_EVERY == 1:
            c = entry.candidate
            log.warning(
                "candidate queue full (%d): %s/%s/%s passed on unverified (%d so far)",
                self.queue.maxsize,
                c.camera_id,
                c.query_id,
                c.track_id,
                self.counters.overflow,
            )
        waited = self._queue_now(entry.candidate.camera_id) - entry.put_at
        for decision in self.verifier.stage.overflow([entry.candidate], [waited]):
            self._decided(decision.candidate)

    def _apply_inbox(self) -> None:
        """Apply the decisions the LMM stage handed back since the last record."""
        if self.verifier is None:
            return
        for decision in self.verifier.collect():
            c = decision.candidate
            key = (c.camera_id, c.query_id, c.track_id)
            generation = self._in_flight.pop(key, None)
            if generation is None or generation != self._generation.get(c.camera_id, 0):
                self.counters.discarded += 1  # its camera ended while the LMM looked at it
                continue
            if decision.error is not None:
                self.counters.failed += 1
                log.warning("deciding %s/%s/%s failed: %s", *key, decision.error)
            else:
                self.counters.decided += 1
            if c.verification == "rejected" or c.verified is False:
                self.counters.rejected += 1
                self.verdicts.reject(key, c.score, self._now.get(c.camera_id, c.time_s))
            self._decided(c)

    def _decided(self, candidate: Candidate) -> None:
        if self.on_decision is not None:
            self.on_decision(candidate)
        self._accept(candidate, opens=True)

    def _accept(self, candidate: Candidate, *, opens: bool) -> None:
        event = self.episodes.accept(candidate, opens=opens)
        if event is not None:
            self._events.append(event)

    # --- people and cameras ------------------------------------------------------------------

    def _track_ended(self, camera: str, track_id: int, now: float, wall_time: float) -> None:
        """A person removed by the tracker: their episodes end when they were last seen."""
        self.book.remove(camera, track_id)
        self.peaks.forget_track(camera, track_id)
        self.verdicts.forget(camera, track_id)
        seen_at, seen_wall = self._seen.pop((camera, track_id), (now, wall_time))
        self._events += self.episodes.track_ended(camera, track_id, seen_at, wall_time=seen_wall)

    def _end_camera(self, camera: str, now: float, wall_time: float) -> None:
        """A camera changed or removed: close its episodes, drop everything decided about it."""
        self.counters.cameras_ended += 1
        for track_id in [t for c, t in self.book.tracks if c == camera]:
            self._track_ended(camera, track_id, now, wall_time)
        self.book.forget_camera(camera)
        self.peaks.forget_camera(camera)
        self._events += self.episodes.end_camera(camera, CloseReason.CAMERA_ENDED)
        self.counters.discarded += len(self.queue.discard(camera))
        self._generation[camera] = self._generation.get(camera, 0) + 1
        self.verdicts.forget(camera)
        self.run_clock.forget(camera)
        self._seen = {k: v for k, v in self._seen.items() if k[0] != camera}
        self._now.pop(camera, None)
        self._last_tick.pop(camera, None)
        log.info("decisions: camera %s ended; its episodes are closed and its state dropped", camera)

    # --- the end -----------------------------------------------------------------------------

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the batch the LMM has (True: none is out); tests and replays."""
        return True if self.verifier is None else self.verifier.wait_idle(timeout_s)

    def finish(self, reason: CloseReason = CloseReason.SHUTDOWN, timeout_s: float = 1.0) -> None:
        """At the end: wait up to ``timeout_s`` for the LMM's batch, apply it, drop what still waits,
        close every open episode (each ending when its person was last seen), emit."""
        if self.verifier is not None:
            self.verifier.wait_idle(timeout_s)
            self._apply_inbox()
            self.counters.discarded += len(self.queue.discard()) + len(self._in_flight)
            self._in_flight.clear()
        for episode in self.episodes.open_episodes:
            seen = self._seen.get((episode.camera_id, episode.track_id))
            self._events += self.episodes.close(
                episode.key, reason, None if seen is None else seen[0], None if seen is None else seen[1]
            )
        self._flush()

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the LMM stage beside the core (at most ``timeout_s``)."""
        if self.verifier is not None:
            self.verifier.close(timeout_s)

    def metrics(self) -> list[Metric]:
        """Candidates chosen, dropped (full queue, deadline) and not raised (by why)."""
        stats = self.stats()
        chosen = Metric("watchword_candidates_total", "counter", "Candidates chosen by the matcher")
        dropped = Metric("watchword_candidates_dropped_total", "counter", "Candidates dropped by full queues")
        dropped.add(stats.overflow, queue="candidates").add(stats.queue.expired, queue="stale")
        suppressed = self.episodes.counters.suppressed_metric()
        suppressed.add(stats.held_rejected, reason="rejected_remembered")
        return [chosen.add(stats.candidates), dropped, suppressed]

    def stats(self) -> CoreStats:
        """A copy of the counters, with the queue's."""
        queue = replace(self.queue.stats, queued=len(self.queue), in_flight=len(self._in_flight))
        return replace(self.counters, queue=queue)
