"""Scores every track against every standing query and picks the window's top candidates.

Called by the pipeline once per detection batch with the frames of all cameras in it, so crops of
all cameras are embedded together. A track is embedded when first seen, then every
``embed_interval_s``, or sooner when its box changes shape markedly (someone falling, bending,
lying down changes the aspect ratio long before the interval is up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agent.matching.config import MatchingConfig
from agent.matching.querybank import QueryBank, TextEncoder
from agent.matching.scoring import PoolingParams, TrackScores, calibrated_scores
from agent.queries import QueryRegistry
from agent.types import Candidate, Frame, FrameResult, TrackEventKind

log = logging.getLogger(__name__)


class ClipEncoderLike(TextEncoder, Protocol):
    """What the matcher needs of the CLIP encoder (``agent.embedding.ClipEncoder``)."""

    def embed_regions(self, regions: Sequence[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray: ...


@dataclass
class TrackState:
    """What the matcher keeps of one track."""

    camera_id: str
    track_id: int
    last_embed_time: float = -float("inf")
    last_aspect: float = 0.0
    embeddings: deque[np.ndarray] = field(default_factory=deque)
    frame: Frame | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    scores: TrackScores | None = None
    # (query id, text hash) of each column of ``scores``
    columns: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class MatcherStats:
    embeddings: int = 0
    embed_calls: int = 0
    embed_seconds: float = 0.0
    windows: int = 0
    candidates: int = 0


class Matcher:
    """Per (track, query) calibrated pooled scores, hysteresis, and top-K candidates per window.

    Args:
        config: matching settings.
        encoder: the CLIP encoder (image and text).
        registry: the query registry shared with the CLI and the API.
        on_candidates: receives each window's candidates (best first); must not block for long.
        model_versions: recorded in every candidate (e.g. {"clip": manifest hash, "detector": name}).
    """

    def __init__(
        self,
        config: MatchingConfig,
        encoder: ClipEncoderLike,
        registry: QueryRegistry,
        *,
        on_candidates: Callable[[list[Candidate]], None] | None = None,
        model_versions: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder
        self.bank = QueryBank(registry, encoder, config)
        self.on_candidates = on_candidates
        self.model_versions = {"clip": encoder.manifest_hash, **(model_versions or {})}
        self.params = PoolingParams(
            ema_alpha=config.ema_alpha,
            window_s=config.pool_window_s,
            exit_margin=config.exit_margin,
        )
        self.tracks: dict[tuple[str, int], TrackState] = {}
        self.stats = MatcherStats()
        self._window_start: float | None = None
        self._masks: dict[str, np.ndarray] = {}
        self._names: np.ndarray | None = None
        self._lock = threading.Lock()
        self.bank.refresh(force=True)

    # --- sampling --------------------------------------------------------------------------

    def _needs_embedding(self, state: TrackState, aspect: float, now: float) -> bool:
        if now - state.last_embed_time >= self.config.embed_interval_s:
            return True
        change = abs(aspect - state.last_aspect) / max(state.last_aspect, 1e-6)
        return change >= self.config.shape_change

    def _embed(self, regions: list[tuple[np.ndarray, Sequence[float]]]) -> np.ndarray:
        """Embed the boxes of all cameras' frames together (the encoder batches them)."""
        t0 = time.perf_counter()
        embeddings = self.encoder.embed_regions(regions)
        self.stats.embed_seconds += time.perf_counter() - t0
        self.stats.embed_calls += 1
        self.stats.embeddings += len(regions)
        return np.asarray(embeddings, dtype=np.float32)

    # --- per batch -------------------------------------------------------------------------

    def process(self, results: list[FrameResult]) -> None:
        """Update scores from one batch of analysed frames; adds ``scores`` to each result's extra."""
        with self._lock:
            self._process(results)

    def _process(self, results: list[FrameResult]) -> None:
        reloaded = self.bank.refresh()
        matrix = self.bank.matrix
        if reloaded:
            self._realign()
        to_embed: list[tuple[TrackState, float, float]] = []  # state, box aspect, time in seconds
        regions: list[tuple[np.ndarray, Sequence[float]]] = []
        now = max((r.frame.wall_time for r in results), default=0.0)
        for result in results:
            frame = result.frame
            for event in result.events:
                if event.kind is TrackEventKind.REMOVED:
                    self.tracks.pop((frame.camera_id, event.track_id), None)
            ids = result.tracks.tracker_id
            if ids is None:
                continue
            for track_id, box in zip(ids, result.tracks.xyxy, strict=True):
                key = (frame.camera_id, int(track_id))
                state = self.tracks.get(key)
                if state is None:
                    state = self.tracks[key] = TrackState(frame.camera_id, int(track_id))
                    state.embeddings = deque(maxlen=self.config.history)
                aspect = float(box[2] - box[0]) / max(float(box[3] - box[1]), 1e-6)
                if self._needs_embedding(state, aspect, frame.wall_time):
                    # the box and frame of the latest sample travel together into a candidate
                    state.box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
                    regions.append((frame.image, state.box))
                    to_embed.append((state, aspect, frame.wall_time))
                    state.frame = frame
        if regions:
            embeddings = self._embed(regions)
            for (state, aspect, time_s), embedding in zip(to_embed, embeddings, strict=True):
                state.embeddings.append(embedding)
                state.last_embed_time = time_s
                state.last_aspect = aspect
            if matrix.queries:
                self._score([(state, time_s) for state, _, time_s in to_embed], embeddings)
        for result in results:
            result.extra["scores"] = self._frame_scores(result)
        self._maybe_emit(now)

    def _columns(self) -> list[tuple[int, str]]:
        matrix = self.bank.matrix
        return list(zip(matrix.ids, matrix.text_hashes, strict=True))

    def _column_names(self) -> np.ndarray:
        """Query ids as strings (JSON keys), one per column (cached until the queries change)."""
        if self._names is None:
            self._names = np.array([str(query_id) for query_id in self.bank.matrix.ids], dtype=object)
        return self._names

    def _camera_mask(self, camera_id: str) -> np.ndarray:
        """Which query columns apply to a camera (cached until the queries change)."""
        mask = self._masks.get(camera_id)
        if mask is None:
            mask = np.array([q.applies_to(camera_id) for q in self.bank.matrix.queries], bool)
            self._masks[camera_id] = mask
        return mask

    def _realign(self) -> None:
        """After the queries changed: move each track's columns to the new order (an edited text
        starts afresh), and score new queries at once on each track's latest embedding."""
        self._masks.clear()
        self._names = None
        columns = self._columns()
        for state in self.tracks.values():
            if state.scores is None:
                continue
            old = {key: i for i, key in enumerate(state.columns)}
            state.scores.remap(np.array([old.get(key, -1) for key in columns], np.int64))
            state.columns = columns
        known = [s for s in self.tracks.values() if s.embeddings]
        if known and columns:
            sampled = [(s, s.last_embed_time) for s in known]
            self._score(sampled, np.stack([s.embeddings[-1] for s in known]), only_new=True)

    def _score(
        self,
        sampled: list[tuple[TrackState, float]],
        embeddings: np.ndarray,
        only_new: bool = False,
    ) -> None:
        """Add a sample to every (track, query) pair that applies; with ``only_new``, only to pairs
        not scored yet."""
        matrix = self.bank.matrix
        probability, cosine = calibrated_scores(
            embeddings, matrix.embeddings, matrix.normal_bank, matrix.normal_index, self.encoder.logit_scale
        )
        for row, (state, time_s) in enumerate(sampled):
            if state.scores is None:
                state.scores = TrackScores(self.params, len(matrix.queries))
                state.columns = self._columns()
            mask = self._camera_mask(state.camera_id)
            if only_new:
                mask = mask & ~state.scores.scored
            state.scores.add(time_s, probability[row], cosine[row], mask)
            state.scores.update_state(matrix.thresholds)

    def _frame_scores(self, result: FrameResult) -> dict[str, dict[str, float]]:
        """Pooled scores by track id and query id (strings, for JSON) for the tracks in a frame."""
        scores: dict[str, dict[str, float]] = {}
        ids = result.tracks.tracker_id
        for track_id in [] if ids is None else ids:
            state = self.tracks.get((result.frame.camera_id, int(track_id)))
            if state is None or state.scores is None:
                continue
            scored = state.scores.scored
            if scored.any():
                names = self._column_names()[scored]
                values = np.round(state.scores.pooled[scored].astype(np.float64), 4)
                scores[str(int(track_id))] = dict(zip(names.tolist(), values.tolist(), strict=True))
        return scores

    # --- candidates ------------------------------------------------------------------------

    def _maybe_emit(self, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
            return
        if now - self._window_start < self.config.window_s:
            return
        self._window_start = now
        self.stats.windows += 1
        candidates = self.window_candidates()
        self.stats.candidates += len(candidates)
        if candidates and self.on_candidates is not None:
            self.on_candidates(candidates)

    def window_candidates(self) -> list[Candidate]:
        """The top-K active (track, query) pairs across all cameras, best first."""
        queries = self.bank.matrix.queries
        active: list[tuple[float, TrackState, int]] = []
        for state in self.tracks.values():
            if state.scores is None or state.frame is None:
                continue
            for index in np.flatnonzero(state.scores.active):
                active.append((float(state.scores.pooled[index]), state, int(index)))
        active.sort(key=lambda item: item[0], reverse=True)
        candidates = []
        for pooled, state, column in active[: self.config.top_k]:
            assert state.frame is not None and state.scores is not None
            query = queries[column]
            candidates.append(
                Candidate(
                    camera_id=state.camera_id,
                    track_id=state.track_id,
                    query_id=query.id,
                    query_text=query.text,
                    score=pooled,
                    cosine=float(state.scores.cosine[column]),
                    wall_time=state.frame.wall_time,
                    frame_index=state.frame.index,
                    box=state.box,
                    frame=state.frame.image,
                    severity=query.severity,
                    score_history=state.scores.column_history(column),
                    model_versions=dict(self.model_versions),
                )
            )
        return candidates
