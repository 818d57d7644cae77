"""Produces calibrated CLIP samples of every track against every standing query; decides nothing.

Called by the pipeline once per detection batch with the frames of all cameras in it, so crops of
all cameras are embedded together. A track is embedded when first seen, then every
``embed_interval_s`` of media time, or sooner when its box changes shape markedly (someone falling,
bending, lying down changes the aspect ratio long before the interval is up). Each sample's
calibrated probability (rounded to 6 decimals, what frame records keep) goes into the frame's
``samples``, its cosine into ``cosines``; the decision core (:mod:`agent.decision`) pools them,
selects and decides, live and in ``watchword eval replay --frames`` alike.

A query added or edited while the agent runs is scored at once on each track's latest embedding;
those first samples travel in the next record of the track's camera, like any other sample, so a
replay of the records pools what the run pooled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agent.api.metrics import Metric, stage_metrics
from agent.matching.config import MatchingConfig
from agent.matching.exemplars import ExemplarStore
from agent.matching.producer import ScoredQueries
from agent.matching.querybank import QueryBank, TextEncoder
from agent.matching.samples import TrackSample
from agent.matching.scoring import calibrated_scores
from agent.matching.trackbook import quantise
from agent.queries import Query, QueryRegistry
from agent.types import FrameResult, TrackEventKind
from agent.zones import ZoneBook, ZoneDwell, foot_point, zone_mask

log = logging.getLogger(__name__)

__all__ = ["ClipEncoderLike", "Matcher", "MatcherStats"]


class ClipEncoderLike(TextEncoder, Protocol):
    """What the matcher needs of the CLIP encoder (``agent.embedding.ClipEncoder``)."""

    def embed_regions(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray: ...


class CueFusionLike(Protocol):
    """Blends behaviour cues into calibrated probabilities (``agent.pose.cue_matcher.CueFusion``)."""

    def fuse(
        self,
        probability: np.ndarray,
        keys: Sequence[tuple[str, int]],
        queries: Sequence[Query],
        in_zone_s: np.ndarray | None = None,
    ) -> np.ndarray: ...

    def evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, Any] | None: ...


@dataclass
class MatcherStats:
    embeddings: int = 0
    embed_calls: int = 0
    embed_seconds: float = 0.0
    samples: int = 0

    def metrics(self, *, embedder: bool) -> list[Metric]:
        """With a CLIP ``embedder``, the crops embedded and the embed stage (the candidates chosen
        are the decision core's)."""
        if not embedder:
            return []
        return [
            Metric("watchword_embeddings_total", "counter", "Person crops embedded").add(self.embeddings),
            *stage_metrics("embed", self.embed_seconds, self.embed_calls),
        ]


@dataclass
class TrackEmbeddings:
    """What the matcher keeps of one track: its latest crop embeddings and when they were taken."""

    camera_id: str
    track_id: int
    last_embed_time: float = -float("inf")  # media seconds
    last_aspect: float = 0.0
    last_point: tuple[float, float] | None = None  # foot point at the last embedding, normalised
    embeddings: deque[np.ndarray] = field(default_factory=deque)


class Matcher:
    """CLIP samples per (track, query); see the module docstring.

    Args:
        config: matching settings.
        encoder: the CLIP encoder (image and text).
        registry: the query registry shared with the CLI and the API.
        model_versions: recorded in every candidate (e.g. {"detector": name}); the CLIP hash is added.
        cue_fusion: blends pose cues into the calibrated probabilities of cue-mapped queries (None: off).
        exemplars: operator feedback; crops like a query's negative exemplars are scored down.
        on_samples: receives each batch's new crop embeddings (the search index); must not block.
        zones: the cameras' zones; a zone-limited query is sampled only while a track's foot point is
            in one of its zones (None: zone-limited queries are never sampled), and the duration cues
            blended into it (``cue_fusion``) count only the time since the track entered them.
    """

    def __init__(
        self,
        config: MatchingConfig,
        encoder: ClipEncoderLike,
        registry: QueryRegistry,
        *,
        model_versions: dict[str, str] | None = None,
        cue_fusion: CueFusionLike | None = None,
        exemplars: ExemplarStore | None = None,
        on_samples: Callable[[list[TrackSample]], None] | None = None,
        zones: ZoneBook | None = None,
    ) -> None:
        self.config = config
        self.zones = zones or ZoneBook.fixed([])
        self.dwell = ZoneDwell()  # since when each track is in each zone-limited query's zones
        self.exemplars = exemplars
        self.on_samples = on_samples
        self.encoder = encoder
        self.cue_fusion = cue_fusion
        self.bank = QueryBank(registry, encoder, config)
        self.model_versions = {"clip": encoder.manifest_hash, **(model_versions or {})}
        self.scored = ScoredQueries()
        self.tracks: dict[tuple[str, int], TrackEmbeddings] = {}
        self.stats = MatcherStats()
        self._rescored: dict[str, dict[int, dict[str, float]]] = {}  # camera -> first samples of new queries
        self._lock = threading.Lock()
        self.bank.refresh(force=True)
        self._adopt_queries()

    # --- what the decision core asks -------------------------------------------------------

    def query(self, query_id: int) -> Query | None:
        return self.scored.query(query_id)

    @property
    def queries(self) -> list[Query]:
        return self.scored.all()

    @property
    def evidence(self) -> Callable[..., dict[str, Any] | None] | None:
        """Cue evidence for candidates when cues are fused in (pose), else None."""
        return None if self.cue_fusion is None else self._cue_evidence

    def _cue_evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, Any] | None:
        """The fusion's cue evidence, with ``zone`` (``in_zone_s``) for a zone-limited query."""
        assert self.cue_fusion is not None
        evidence = self.cue_fusion.evidence(camera_id, track_id, query, frame_time)
        zone = self.dwell.evidence(camera_id, track_id, query, frame_time)
        if evidence is not None and zone is not None:  # durations were counted inside the zone only
            evidence["zone"] = zone
        return evidence

    def metrics(self) -> list[Metric]:
        """Crops embedded and the embed stage's time (:meth:`MatcherStats.metrics`)."""
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

    def _state(self, camera_id: str, track_id: int) -> TrackEmbeddings:
        key = (camera_id, int(track_id))
        state = self.tracks.get(key)
        if state is None:
            state = self.tracks[key] = TrackEmbeddings(camera_id, int(track_id))
            state.embeddings = deque(maxlen=self.config.history)
        return state

    def process(self, results: list[FrameResult]) -> None:
        """Sample one batch of analysed frames: adds ``samples`` and ``cosines`` where crops were
        embedded, and ``columns`` to the first frame after the queries changed."""
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
                    state = self.tracks.get(key)
                    seen[key] = (
                        (-float("inf"), 0.0) if state is None else (state.last_embed_time, state.last_aspect)
                    )
                aspect = float(box[2] - box[0]) / max(float(box[3] - box[1]), 1e-6)
                if self._needs_embedding(*seen[key], aspect, frame.media_time):
                    seen[key] = (frame.media_time, aspect)
                    chosen.append((int(track_id), aspect, tuple(float(v) for v in box)))
            plan.append(chosen)
        return plan

    def refresh_queries(self, force: bool = False) -> bool:
        """Take the registry's changes (checked at most every ``refresh_s``, or now with ``force``);
        a new or edited query is scored at once on each track's latest crop, and those samples
        and the new columns go into the next frames. True if the queries changed."""
        with self._lock:
            return self._refresh(force)

    def _refresh(self, force: bool = False) -> bool:
        if not self.bank.refresh(force=force):
            return False
        self._adopt_queries(rescore=True)
        return True

    def _observe_zones(self, results: list[FrameResult], queries: Sequence[Query]) -> None:
        """Where every track of every frame is, for the blended duration cues of zone-limited
        queries (every frame, not only those embedded: entering is noticed on time)."""
        for result in results:
            frame = result.frame
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    self.dwell.forget(frame.camera_id, event.track_id)
            ids = result.tracks.tracker_id
            if ids is None or not any(q.zones for q in queries):
                continue
            height, width = frame.image.shape[:2]
            for track_id, box in zip(ids.tolist(), result.tracks.xyxy, strict=True):
                mask = zone_mask(self.zones, queries, frame.camera_id, box, width, height)
                self.dwell.update(frame.camera_id, int(track_id), queries, mask, frame.media_time)

    def _in_zone_s(
        self, rows: Sequence[tuple[str, int, float]], queries: Sequence[Query]
    ) -> np.ndarray | None:
        """Seconds each (camera, track, media time) row has been in each query's zones (``inf`` for
        a query without zones); None when no query has zones."""
        if not any(q.zones for q in queries):
            return None
        return np.array(
            [[self.dwell.in_zone_s(camera, track, q, now) for q in queries] for camera, track, now in rows],
            np.float64,
        ).reshape(len(rows), len(queries))

    def _process(self, results: list[FrameResult]) -> None:
        self._refresh()
        self.zones.refresh()
        if self.cue_fusion is not None:
            self._observe_zones(results, self.bank.matrix.queries)
        plan = self._plan(results)
        regions = [
            (result.frame.image, box)
            for result, chosen in zip(results, plan, strict=True)
            for _, _, box in chosen
        ]
        matrix = self.bank.matrix
        probability = cosine = embeddings = np.zeros((0, 0), np.float32)
        if regions:
            embeddings = self._embed(regions)
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
                    embedded = [
                        (result.frame.camera_id, track_id, result.frame.media_time)
                        for result, chosen in zip(results, plan, strict=True)
                        for track_id, _, _ in chosen
                    ]
                    probability = self.cue_fusion.fuse(
                        probability,
                        [(camera, track) for camera, track, _ in embedded],
                        matrix.queries,
                        self._in_zone_s(embedded, matrix.queries),
                    )
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
        columns = self.scored.announce()
        if columns is not None and results:
            results[0].extra["columns"] = columns
        names = [str(q.id) for q in matrix.queries]
        recorded, recorded_cos = quantise(probability), quantise(cosine)
        row = 0
        for result, chosen in zip(results, plan, strict=True):
            frame = result.frame
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    self.tracks.pop((frame.camera_id, event.track_id), None)
                    self._rescored.get(frame.camera_id, {}).pop(event.track_id, None)
            applies = [q.applies_to(frame.camera_id) for q in matrix.queries]
            samples: dict[str, dict[str, float]] = {}
            cosines: dict[str, dict[str, float]] = {}
            height, width = frame.image.shape[:2]
            for track_id, aspect, box in chosen:
                state = self._state(frame.camera_id, track_id)
                state.embeddings.append(embeddings[row])
                state.last_embed_time, state.last_aspect = frame.media_time, aspect
                state.last_point = foot_point(box, width, height)
                if len(probability):
                    inside = zone_mask(self.zones, matrix.queries, frame.camera_id, box, width, height)
                    allowed = [a and z for a, z in zip(applies, inside, strict=True)]
                    rows = zip(names, recorded[row], recorded_cos[row], allowed, strict=True)
                    sampled = [(n, float(p), float(c)) for n, p, c, a in rows if a]
                    samples[str(track_id)] = {n: p for n, p, _ in sampled}
                    cosines[str(track_id)] = {n: c for n, _, c in sampled}
                row += 1
            for track_id, first in self._rescored.pop(frame.camera_id, {}).items():
                if str(track_id) not in samples and first:
                    samples[str(track_id)] = first
            samples = {t: s for t, s in samples.items() if s}
            if samples:
                self.stats.samples += len(samples)
                result.extra["samples"] = samples
                result.extra["cosines"] = {t: cosines[t] for t in samples if t in cosines}

    def _adopt_queries(self, rescore: bool = False) -> None:
        """Take the bank's queries; with ``rescore``, score new or edited queries at once on each
        track's latest embedding (an operator sees a new query scored within a second): those
        samples go into the next record of each track's camera."""
        matrix = self.bank.matrix
        before = set(zip(self.scored.hashes, (q.id for q in self.scored.queries), strict=True))
        self.scored.set(matrix.queries, matrix.text_hashes)
        known = [s for s in self.tracks.values() if s.embeddings]
        pairs = zip(matrix.queries, matrix.text_hashes, strict=True)
        new = [i for i, (q, h) in enumerate(pairs) if (h, q.id) not in before]
        if not (rescore and known and new):
            return
        latest = np.stack([s.embeddings[-1] for s in known])
        probability, _ = calibrated_scores(
            latest, matrix.embeddings, matrix.normal_bank, matrix.normal_index, self.encoder.logit_scale
        )
        if self.exemplars is not None:  # console: operator feedback
            probability = self.exemplars.adjust([s.camera_id for s in known], latest, matrix.ids, probability)
        recorded = quantise(probability)
        for row, state in enumerate(known):
            first = {
                str(matrix.queries[i].id): float(recorded[row, i])
                for i in new
                if matrix.queries[i].applies_to(state.camera_id)
                and (
                    not matrix.queries[i].zones
                    or (
                        state.last_point is not None
                        and self.zones.allows(matrix.queries[i], state.camera_id, state.last_point)
                    )
                )
            }
            if first:
                self._rescored.setdefault(state.camera_id, {})[state.track_id] = first
