"""Standing queries scored from behaviour cues alone, for an agent without a CLIP model.

Each enabled query that maps to a cue (:mod:`agent.pose.vocabulary`) becomes a column of the same
:class:`~agent.matching.trackbook.TrackBook` the CLIP matcher uses. A track's cue value, sampled every
``pose.score_interval_s`` of media time, is the calibrated probability of the sample (cues are
updated on every frame, so sampling them costs nothing, unlike a crop embedding). Pooling,
hysteresis, fair per-window selection, the candidate queue, episodes and alerts are then exactly
those of CLIP scores. Queries that map to no cue are not columns, so they stay unevaluated (the
start-up message names them).

With a CLIP model, :class:`CueFusion` instead blends the cue into the CLIP matcher's calibrated
probabilities (``pose.cue_weight``, scaled by the mapping's confidence).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.api.metrics import Metric
from agent.matching.config import MatchingConfig
from agent.matching.matcher import AlertStateSource, MatcherStats, SelectionSink, WindowedSelection
from agent.matching.scoring import PoolingParams
from agent.matching.selection import Pick
from agent.matching.trackbook import TrackBook
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.querycues import QueryCues
from agent.queries import Query
from agent.types import Candidate, FrameResult, TrackEventKind

log = logging.getLogger(__name__)


def cue_hash(query: Query, cue: str) -> str:
    """Identifies a cue column: the query's text and the cue it maps to (an edit starts afresh)."""
    return hashlib.sha256(json.dumps([query.text, cue]).encode()).hexdigest()[:32]


class CueMatcher(WindowedSelection):
    """Scores cue-mapped queries from the pose stage's cues; selects candidates like the CLIP matcher.

    Args:
        config: matching settings (pooling, thresholds, windows).
        pose_config: the ``pose:`` section (the sampling cadence of cue scores).
        pose: the pose stage, which runs before this one in the same batch.
        cues: the queries' cue mappings, kept in step with the registry.
        sink: receives each window's selection.
        alerts: which pairs are alerting or cooling down.
        model_versions: recorded in every candidate.
    """

    def __init__(
        self,
        config: MatchingConfig,
        pose_config: PoseConfig,
        pose: PoseAnalyzer,
        cues: QueryCues,
        *,
        sink: SelectionSink | None = None,
        alerts: AlertStateSource | None = None,
        model_versions: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.interval_s = pose_config.score_interval_s
        self.pose = pose
        self.cues = cues
        self.sink = sink
        self.alerts = alerts
        self.model_versions = {"pose": pose.estimator.version, "cues": "minilm", **(model_versions or {})}
        params = PoolingParams(
            ema_alpha=config.ema_alpha, window_s=config.pool_window_s, exit_margin=config.exit_margin
        )
        self.book = TrackBook(params, config.window_s, config.top_k, config.history)
        self.stats = MatcherStats()
        self.column_cues: list[str] = []
        self._lock = threading.Lock()
        self.cues.refresh(force=True)
        self._adopt()

    def _adopt(self) -> None:
        mapped = self.cues.mapped()
        queries = [query for query, _ in mapped]
        self.column_cues = [mapping.cue for _, mapping in mapped if mapping.cue is not None]
        thresholds = np.array(
            [q.threshold if q.threshold is not None else self.config.default_threshold for q in queries],
            np.float32,
        )
        hashes = [cue_hash(q, cue) for q, cue in zip(queries, self.column_cues, strict=True)]
        self.book.set_queries(queries, thresholds, hashes)

    def metrics(self) -> list[Metric]:
        """Candidates chosen from the cues (no crop is embedded here)."""
        return self.stats.metrics(embedder=False)

    def process(self, results: list[FrameResult]) -> None:
        """Sample cue values into the track book; adds ``cue_scores`` to each frame's extra."""
        with self._lock:
            if self.cues.refresh():
                self._adopt()
            for result in results:
                self._frame(result)

    def _frame(self, result: FrameResult) -> None:
        frame = result.frame
        now = frame.media_time
        for event in result.events:
            if event.kind is TrackEventKind.REMOVED:
                self.book.remove(frame.camera_id, event.track_id)
        samples: dict[str, dict[str, float]] = {}
        ids = result.tracks.tracker_id
        if ids is not None and self.column_cues:
            for track_id in ids.tolist():
                pose_track = self.pose.track(frame.camera_id, track_id)
                if pose_track is None or pose_track.cues.posture is None or pose_track.frame is None:
                    continue  # no pose sample yet: nothing to score
                state = self.book.get(frame.camera_id, track_id)
                if now - state.last_embed_time < self.interval_s:
                    continue
                state.last_embed_time = now
                # the evidence frame is the one the latest pose sample was taken on (at most
                # pose.interval_s old), so its skeleton is drawn on the person, not beside them
                state.frame, state.box = pose_track.frame, pose_track.box
                values = pose_track.cues.values
                probability = np.array([values.get(cue, 0.0) for cue in self.column_cues], np.float32)
                added = self.book.add_sample(state, now, probability, probability)
                if added:
                    samples[str(track_id)] = added
        result.extra["cue_scores"] = self.book.frame_scores(
            frame.camera_id, [] if ids is None else ids.tolist()
        )
        if samples:
            result.extra["cue_samples"] = samples
        self._window(frame.camera_id, now)

    def candidate(self, camera_id: str, pick: Pick, now: float) -> Candidate:
        """The candidate of a pick, with the track's cue evidence (values, history, keypoints)."""
        query = self.book.queries[pick.column]
        candidate = self.book.candidate(camera_id, pick, now, self.model_versions)
        state = self.book.tracks[(camera_id, pick.track_id)]
        frame_time = state.frame.media_time if state.frame is not None else None
        evidence = self.pose.evidence(camera_id, pick.track_id, frame_time) or {}
        evidence["cue"] = self.column_cues[pick.column]
        evidence["mapping"] = self.cues.mappings[query.id].to_dict()
        candidate.pose = evidence
        return candidate


class CueFusion:
    """Blends cue values into the CLIP matcher's calibrated probabilities.

    ``p = (1 - w) * p_clip + w * cue`` for a query that maps to a cue, with ``w = cue_weight *
    confidence`` of the mapping; a query that maps to no cue keeps its CLIP probability.
    """

    def __init__(self, pose: PoseAnalyzer, cues: QueryCues, cue_weight: float) -> None:
        self.pose = pose
        self.cues = cues
        self.cue_weight = cue_weight

    def fuse(
        self, probability: np.ndarray, keys: Sequence[tuple[str, int]], queries: Sequence[Query]
    ) -> np.ndarray:
        """``probability`` (tracks x queries) with each mapped query's cue blended in."""
        self.cues.refresh()
        fused = np.array(probability, np.float32, copy=True)
        for column, query in enumerate(queries):
            mapping = self.cues.mappings.get(query.id)
            if mapping is None or mapping.cue is None:
                continue
            weight = self.cue_weight * mapping.confidence
            for row, (camera_id, track_id) in enumerate(keys):
                track = self.pose.track(camera_id, track_id)
                if track is None or track.cues.posture is None:
                    continue
                cue = track.cues.values.get(mapping.cue, 0.0)
                fused[row, column] = (1.0 - weight) * fused[row, column] + weight * cue
        return fused

    def evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, Any] | None:
        """The track's cue evidence for a candidate whose frame is at media time ``frame_time``, with
        the query's mapping and the fusion weight."""
        evidence = self.pose.evidence(camera_id, track_id, frame_time)
        mapping = self.cues.mappings.get(query.id)
        if evidence is None or mapping is None:
            return evidence
        evidence["cue"] = mapping.cue
        evidence["mapping"] = mapping.to_dict()
        evidence["cue_weight"] = round(self.cue_weight * mapping.confidence, 4) if mapping.cue else 0.0
        return evidence
