"""Scores every track against every standing query and selects each window's candidates fairly.

Called by the pipeline once per detection batch with the frames of all cameras in it, so crops of
all cameras are embedded together; the samples are then pooled frame by frame, in order, on each
frame's media time (:attr:`agent.types.Frame.media_time`), and each camera's window is closed at the
frame that ends it. A track is embedded when first seen, then every ``embed_interval_s`` of media
time, or sooner when its box changes shape markedly (someone falling, bending, lying down changes
the aspect ratio long before the interval is up).

Each frame's JSON record gets ``scores`` (pooled, by track and query id) and ``samples`` (the
calibrated probability of each sample taken in that frame), from which ``watchword eval replay
--frames`` re-runs every decision without a model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agent.alerts.episodes import AlertStateView
from agent.api.metrics import Metric, stage_metrics
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import ExemplarStore
from agent.matching.querybank import QueryBank, TextEncoder
from agent.matching.samples import TrackSample
from agent.matching.scoring import PoolingParams, calibrated_scores
from agent.matching.selection import Pick
from agent.matching.trackbook import TrackBook, TrackState
from agent.queries import Query, QueryRegistry
from agent.types import Candidate, FrameResult, TrackEventKind

log = logging.getLogger(__name__)

__all__ = ["AlertStateSource", "ClipEncoderLike", "Matcher", "MatcherStats", "SelectionSink", "TrackState"]


class ClipEncoderLike(TextEncoder, Protocol):
    """What the matcher needs of the CLIP encoder (``agent.embedding.ClipEncoder``)."""

    def embed_regions(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray: ...


class CueFusionLike(Protocol):
    """Blends behaviour cues into calibrated probabilities (``agent.pose.cue_matcher.CueFusion``)."""

    def fuse(
        self, probability: np.ndarray, keys: Sequence[tuple[str, int]], queries: Sequence[Query]
    ) -> np.ndarray: ...

    def evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, Any] | None: ...


class AlertStateSource(Protocol):
    """Which (camera, query, track) keys are alerting or cooling down (the alert manager)."""

    def alert_state(self) -> AlertStateView: ...


class SelectionSink(Protocol):
    """Where each window's selection goes (the :class:`~agent.matching.candidates.CandidateQueue`)."""

    def put_window(self, opens: list[Candidate], updates: list[Candidate]) -> None: ...

    def pending(self) -> frozenset[tuple[str, int, int]]: ...


@dataclass
class MatcherStats:
    embeddings: int = 0
    embed_calls: int = 0
    embed_seconds: float = 0.0
    windows: int = 0
    candidates: int = 0
    updates: int = 0

    def metrics(self, *, embedder: bool) -> list[Metric]:
        """Candidates chosen, and with a CLIP ``embedder`` the crops embedded and the embed stage."""
        chosen = Metric("watchword_candidates_total", "counter", "Candidates chosen by the matcher")
        if not embedder:
            return [chosen.add(self.candidates)]
        return [
            Metric("watchword_embeddings_total", "counter", "Person crops embedded").add(self.embeddings),
            chosen.add(self.candidates),
            *stage_metrics("embed", self.embed_seconds, self.embed_calls),
        ]


class WindowedSelection:
    """What CLIP matching and cue-only matching share: every ``window_s`` of a camera's media time,
    select fairly from the track book and hand opens and updates to the sink.

    Subclasses set ``book``, ``sink``, ``alerts`` and ``stats`` and say how a pick becomes a candidate.
    """

    book: TrackBook
    sink: SelectionSink | None
    alerts: AlertStateSource | None
    stats: MatcherStats

    def candidate(self, camera_id: str, pick: Pick, now: float) -> Candidate:
        raise NotImplementedError

    def _window(self, camera_id: str, now: float) -> None:
        if not self.book.window_due(camera_id, now):
            return
        alert_state = self.alerts.alert_state() if self.alerts is not None else AlertStateView()
        pending = self.sink.pending() if self.sink is not None else frozenset()
        picks = self.book.select(camera_id, now, alert_state, pending)
        self.stats.windows += 1
        opens = [self.candidate(camera_id, pick, now) for pick in picks if pick.opens]
        updates = [self.candidate(camera_id, pick, now) for pick in picks if not pick.opens]
        self.stats.candidates += len(opens)
        self.stats.updates += len(updates)
        if self.sink is not None and (opens or updates):
            self.sink.put_window(opens, updates)


class Matcher(WindowedSelection):
    """Per (track, query) calibrated pooled scores, hysteresis, and fair candidates per window.

    Args:
        config: matching settings.
        encoder: the CLIP encoder (image and text).
        registry: the query registry shared with the CLI and the API.
        sink: receives each window's selection; must not block for long.
        alerts: tells selection which pairs are alerting or cooling down (None: none are).
        model_versions: recorded in every candidate (e.g. {"clip": manifest hash, "detector": name}).
        cue_fusion: blends pose cues into the calibrated probabilities of cue-mapped queries (None: off).
        exemplars: operator feedback; crops like a query's negative exemplars are scored down.
        on_samples: receives each batch's new crop embeddings (the search index); must not block.
    """

    def __init__(
        self,
        config: MatchingConfig,
        encoder: ClipEncoderLike,
        registry: QueryRegistry,
        *,
        sink: SelectionSink | None = None,
        alerts: AlertStateSource | None = None,
        model_versions: dict[str, str] | None = None,
        cue_fusion: CueFusionLike | None = None,
        exemplars: ExemplarStore | None = None,
        on_samples: Callable[[list[TrackSample]], None] | None = None,
    ) -> None:
        self.config = config
        self.exemplars = exemplars
        self.on_samples = on_samples
        self.encoder = encoder
        self.cue_fusion = cue_fusion
        self.bank = QueryBank(registry, encoder, config)
        self.sink = sink
        self.alerts = alerts
        self.model_versions = {"clip": encoder.manifest_hash, **(model_versions or {})}
        self.params = PoolingParams(
            ema_alpha=config.ema_alpha,
            window_s=config.pool_window_s,
            exit_margin=config.exit_margin,
        )
        self.book = TrackBook(self.params, config.window_s, config.top_k, config.history)
        self.stats = MatcherStats()
        self._lock = threading.Lock()
        self.bank.refresh(force=True)
        self._adopt_queries()

    @property
    def tracks(self) -> dict[tuple[str, int], TrackState]:
        return self.book.tracks

    def metrics(self) -> list[Metric]:
        """Crops embedded, candidates chosen and the embed stage's time (:meth:`MatcherStats.metrics`)."""
        return self.stats.metrics(embedder=True)

    # --- sampling --------------------------------------------------------------------------

    def _needs_embedding(self, last_time: float, last_aspect: float, aspect: float, now: float) -> bool:
        if now - last_time >= self.config.embed_interval_s:
            return True
        change = abs(aspect - last_aspect) / max(last_aspect, 1e-6)
        return change >= self.config.shape_change

    def _embed(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray:
        """Embed the boxes of all cameras' frames together (the encoder batches them)."""
        t0 = time.perf_counter()
        embeddings = self.encoder.embed_regions(regions)
        self.stats.embed_seconds += time.perf_counter() - t0
        self.stats.embed_calls += 1
        self.stats.embeddings += len(regions)
        return np.asarray(embeddings, dtype=np.float32)

    # --- per batch -------------------------------------------------------------------------

    def process(self, results: list[FrameResult]) -> None:
        """Update scores from one batch of analysed frames; adds ``scores`` (and ``samples`` where
        crops were sampled) to each result's extra, and selects candidates at window boundaries."""
        with self._lock:
            self._process(results)

    def _plan(self, results: list[FrameResult]) -> list[list[tuple[int, float, tuple[float, ...]]]]:
        """Which tracks of each frame to embed: per frame, (track id, box aspect, box)."""
        seen: dict[tuple[str, int], tuple[float, float]] = {}  # key -> (last embed time, aspect)
        plan: list[list[tuple[int, float, tuple[float, ...]]]] = []
        for result in results:
            frame = result.frame
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    seen[(frame.camera_id, event.track_id)] = (-float("inf"), 0.0)
            chosen: list[tuple[int, float, tuple[float, ...]]] = []
            ids = result.tracks.tracker_id
            if ids is None:
                plan.append(chosen)
                continue
            for track_id, box in zip(ids, result.tracks.xyxy, strict=True):
                key = (frame.camera_id, int(track_id))
                if key not in seen:
                    state = self.book.tracks.get(key)
                    seen[key] = (
                        (-float("inf"), 0.0) if state is None else (state.last_embed_time, state.last_aspect)
                    )
                aspect = float(box[2] - box[0]) / max(float(box[3] - box[1]), 1e-6)
                if self._needs_embedding(*seen[key], aspect, frame.media_time):
                    seen[key] = (frame.media_time, aspect)
                    chosen.append((int(track_id), aspect, tuple(float(v) for v in box)))
            plan.append(chosen)
        return plan

    def _process(self, results: list[FrameResult]) -> None:
        if self.bank.refresh():
            self._adopt_queries(rescore=True)
        plan = self._plan(results)
        regions = [
            (result.frame.image, box)
            for result, chosen in zip(results, plan, strict=True)
            for _, _, box in chosen
        ]
        probability = cosine = embeddings = np.zeros((0, 0), np.float32)
        if regions:
            embeddings = self._embed(regions)
            matrix = self.bank.matrix
            if matrix.queries:
                probability, cosine = calibrated_scores(
                    embeddings,
                    matrix.embeddings,
                    matrix.normal_bank,
                    matrix.normal_index,
                    self.encoder.logit_scale,
                )
                # --- pose cues (pose): each cue-mapped query's cue blended into its probability
                if self.cue_fusion is not None:
                    keys = [
                        (result.frame.camera_id, track_id)
                        for result, chosen in zip(results, plan, strict=True)
                        for track_id, _, _ in chosen
                    ]
                    probability = self.cue_fusion.fuse(probability, keys, matrix.queries)
                # --- end pose cues
            # --- console: operator feedback scores false-alarm look-alikes down; search keeps crops
            taken = [(r.frame, t, b) for r, chosen in zip(results, plan, strict=True) for t, _, b in chosen]
            if self.exemplars is not None and len(probability):
                cameras = [frame.camera_id for frame, _, _ in taken]
                probability = self.exemplars.adjust(cameras, embeddings, matrix.ids, probability)
            if self.on_samples is not None:
                self.on_samples(
                    [
                        TrackSample(f.camera_id, t, f.wall_time, f.image, (b[0], b[1], b[2], b[3]), e)
                        for (f, t, b), e in zip(taken, embeddings, strict=True)
                    ]
                )
            # --- end console
        row = 0
        for result, chosen in zip(results, plan, strict=True):
            frame = result.frame
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    self.book.remove(frame.camera_id, event.track_id)
            samples: dict[str, dict[str, float]] = {}
            for track_id, aspect, box in chosen:
                state = self.book.get(frame.camera_id, track_id)
                state.embeddings.append(embeddings[row])
                state.last_embed_time, state.last_aspect = frame.media_time, aspect
                # the box and frame of the latest sample travel together into a candidate
                state.frame, state.box = frame, (box[0], box[1], box[2], box[3])
                if len(probability):
                    added = self.book.add_sample(state, frame.media_time, probability[row], cosine[row])
                    if added:
                        samples[str(track_id)] = added
                row += 1
            ids = result.tracks.tracker_id
            result.extra["scores"] = self.book.frame_scores(
                frame.camera_id, [] if ids is None else ids.tolist()
            )
            if samples:
                result.extra["samples"] = samples
            self._window(frame.camera_id, frame.media_time)

    def _adopt_queries(self, rescore: bool = False) -> None:
        """Take the bank's queries; with ``rescore``, score new queries at once on each track's
        latest embedding (an operator sees a new query scored within a second)."""
        matrix = self.bank.matrix
        self.book.set_queries(matrix.queries, matrix.thresholds, matrix.text_hashes)
        known = [s for s in self.book.tracks.values() if s.embeddings]
        if not (rescore and known and matrix.queries):
            return
        probability, cosine = calibrated_scores(
            np.stack([s.embeddings[-1] for s in known]),
            matrix.embeddings,
            matrix.normal_bank,
            matrix.normal_index,
            self.encoder.logit_scale,
        )
        if self.exemplars is not None:  # console: operator feedback
            latest = np.stack([s.embeddings[-1] for s in known])
            probability = self.exemplars.adjust([s.camera_id for s in known], latest, matrix.ids, probability)
        for row, state in enumerate(known):
            self.book.add_sample(state, state.last_embed_time, probability[row], cosine[row], only_new=True)

    # --- candidates ------------------------------------------------------------------------

    def candidate(self, camera_id: str, pick: Pick, now: float) -> Candidate:
        """The candidate of a pick, chosen at media time ``now``, with its latest sample's frame."""
        candidate = self.book.candidate(camera_id, pick, now, self.model_versions)
        if self.cue_fusion is not None:  # pose cues: the track's cue evidence travels with it
            query = self.book.queries[pick.column]
            state = self.book.tracks[(camera_id, pick.track_id)]
            frame_time = state.frame.media_time if state.frame is not None else None
            candidate.pose = self.cue_fusion.evidence(camera_id, pick.track_id, query, frame_time)
        return candidate
