"""Standing queries sampled from behaviour cues alone, for an agent without a CLIP model.

Each enabled query that maps to a cue (:mod:`agent.pose.vocabulary`) is a scored query of this
producer. A track's cue value, sampled every ``pose.score_interval_s`` of media time, is the
calibrated probability of the sample (cues are updated on every frame, so sampling them costs
nothing, unlike a crop embedding); the samples go into the frame's ``cue_samples``. Pooling,
hysteresis, fair per-window selection, the candidate queue, episodes and alerts are the decision
core's (:mod:`agent.decision`), exactly as for CLIP samples. Queries that map to no cue are not
scored, so they stay unevaluated (the start-up message names them).

A query limited to zones (:mod:`agent.zones`) is sampled only while the track's foot point is in
one of them, and its duration cues (``still_long``, ``ground_long``) count only the time since the
track last entered the zone: standing still outside and then stepping in starts the count anew.

With a CLIP model, :class:`CueFusion` instead blends the cue into the CLIP matcher's calibrated
probabilities (``pose.cue_weight``, scaled by the mapping's confidence); there too a zone-limited
query's duration cue counts only the time in its zones (the CLIP matcher says how long).
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
from agent.matching.matcher import MatcherStats
from agent.matching.producer import ScoredQueries
from agent.matching.trackbook import SAMPLE_DECIMALS
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.cues import logistic
from agent.pose.querycues import QueryCues
from agent.queries import Query
from agent.types import FrameResult, TrackEventKind
from agent.zones import ZoneBook, ZoneDwell, zone_mask

log = logging.getLogger(__name__)


DURATION_CUES = ("still_long", "ground_long")


def cue_in_zone(cues: Any, cue: str, in_zone_s: float) -> float:
    """The value of ``cue`` among a track's ``cues`` (:class:`agent.pose.cues.TrackCues`), a
    duration cue counting at most ``in_zone_s`` seconds: the time the track has been in a
    zone-limited query's zones (``inf`` for a query without zones: the cue as it is)."""
    value = float(cues.values.get(cue, 0.0))
    if in_zone_s == float("inf") or cue not in DURATION_CUES:
        return value
    params = cues.params
    lying = float(cues.values.get("lying", 0.0))
    if cue == "still_long":
        seconds = min(float(cues.evidence.get("still_s", 0.0)), in_zone_s)
        return logistic(seconds, params.still_long_s, 0.2 * params.still_long_s) * (1.0 - lying)
    seconds = min(float(cues.evidence.get("lying_s", 0.0)), in_zone_s)
    return logistic(seconds, params.ground_long_s, 0.2 * params.ground_long_s) * lying


def cue_hash(query: Query, cue: str) -> str:
    """Identifies a cue column: the query's text and the cue it maps to (an edit starts afresh)."""
    return hashlib.sha256(json.dumps([query.text, cue]).encode()).hexdigest()[:32]


class CueMatcher:
    """Samples cue-mapped queries from the pose stage's cues (see the module docstring).

    Args:
        config: matching settings.
        pose_config: the ``pose:`` section (the sampling cadence of cue scores).
        pose: the pose stage, which runs before this one in the same batch.
        cues: the queries' cue mappings, kept in step with the registry.
        model_versions: recorded in every candidate.
        zones: the cameras' zones (None: zone-limited queries are never sampled).
    """

    def __init__(
        self,
        config: MatchingConfig,
        pose_config: PoseConfig,
        pose: PoseAnalyzer,
        cues: QueryCues,
        *,
        model_versions: dict[str, str] | None = None,
        zones: ZoneBook | None = None,
    ) -> None:
        self.config = config
        self.zones = zones or ZoneBook.fixed([])
        self.dwell = ZoneDwell()  # since when each track is in each zone-limited query's zones
        self.interval_s = pose_config.score_interval_s
        self.pose = pose
        self.cues = cues
        self.model_versions = {"pose": pose.estimator.version, "cues": "minilm", **(model_versions or {})}
        self.scored = ScoredQueries()
        self.stats = MatcherStats()
        self.column_cues: list[str] = []
        self._last_sample: dict[tuple[str, int], float] = {}  # track -> media s of its last sample
        self._lock = threading.Lock()
        self.cues.refresh(force=True)
        self._adopt()

    def query(self, query_id: int) -> Query | None:
        return self.scored.query(query_id)

    @property
    def queries(self) -> list[Query]:
        return self.scored.all()

    def _adopt(self) -> None:
        mapped = self.cues.mapped()
        queries = [query for query, _ in mapped]
        self.column_cues = [mapping.cue for _, mapping in mapped if mapping.cue is not None]
        hashes = [cue_hash(q, cue) for q, cue in zip(queries, self.column_cues, strict=True)]
        self.scored.set(queries, hashes)

    def metrics(self) -> list[Metric]:
        """None of its own: no crop is embedded here, and candidates are the decision core's."""
        return self.stats.metrics(embedder=False)

    def process(self, results: list[FrameResult]) -> None:
        """Sample cue values: adds ``cue_samples`` to each frame where a track was sampled."""
        with self._lock:
            if self.cues.refresh():
                self._adopt()
            self.zones.refresh()
            columns = self.scored.announce()
            if columns is not None and results:
                results[0].extra["columns"] = columns
            for result in results:
                self._frame(result)

    def _frame(self, result: FrameResult) -> None:
        frame = result.frame
        now = frame.media_time
        for event in result.events:
            if event.kind is TrackEventKind.REMOVED:
                self._last_sample.pop((frame.camera_id, event.track_id), None)
                self.dwell.forget(frame.camera_id, event.track_id)
        samples: dict[str, dict[str, float]] = {}
        taken_on: dict[int, tuple[Any, tuple[float, float, float, float]]] = {}
        ids = result.tracks.tracker_id
        queries = self.scored.queries
        if ids is None or not queries:
            return
        applies = [q.applies_to(frame.camera_id) for q in queries]
        height, width = frame.image.shape[:2]
        for track_id, box in zip(ids.tolist(), result.tracks.xyxy, strict=True):
            inside = zone_mask(self.zones, queries, frame.camera_id, box, width, height)
            self.dwell.update(frame.camera_id, int(track_id), queries, inside, now)
            pose_track = self.pose.track(frame.camera_id, track_id)
            if pose_track is None or pose_track.cues.posture is None or pose_track.frame is None:
                continue  # no pose sample yet: nothing to score
            key = (frame.camera_id, int(track_id))
            if now - self._last_sample.get(key, -float("inf")) < self.interval_s:
                continue
            self._last_sample[key] = now
            sample = {
                str(q.id): round(
                    float(np.float32(cue_in_zone(pose_track.cues, cue, self.dwell.in_zone_s(*key, q, now)))),
                    SAMPLE_DECIMALS,
                )
                for q, cue, a, z in zip(queries, self.column_cues, applies, inside, strict=True)
                if a and z
            }
            if sample:
                samples[str(track_id)] = sample
                # the evidence frame is the one the latest pose sample was taken on (at most
                # pose.interval_s old), so its skeleton is drawn on the person, not beside them
                taken_on[int(track_id)] = (pose_track.frame, pose_track.box)
        if samples:
            self.stats.samples += len(samples)
            result.extra["cue_samples"] = samples
            result.extra["_sample_frames"] = taken_on

    def evidence(
        self, camera_id: str, track_id: int, query: Query, frame_time: float | None = None
    ) -> dict[str, Any] | None:
        """The track's cue evidence (values, history, keypoints) for a candidate of ``query``."""
        evidence = self.pose.evidence(camera_id, track_id, frame_time) or {}
        mapping = self.cues.mappings.get(query.id)
        if mapping is not None:
            evidence["cue"] = mapping.cue
            evidence["mapping"] = mapping.to_dict()
        zone = self.dwell.evidence(camera_id, track_id, query, frame_time)
        if zone is not None:  # durations were counted inside the zone only
            evidence["zone"] = zone
        return evidence


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
        self,
        probability: np.ndarray,
        keys: Sequence[tuple[str, int]],
        queries: Sequence[Query],
        in_zone_s: np.ndarray | None = None,
    ) -> np.ndarray:
        """``probability`` (tracks x queries) with each mapped query's cue blended in.

        ``in_zone_s`` (tracks x queries, seconds; None: no zones) is how long each track has been in
        each query's zones (``inf`` for a query without zones): a zone-limited query's duration cue
        counts that time only, so stillness outside the zone does not carry in.
        """
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
                seconds = float("inf") if in_zone_s is None else float(in_zone_s[row, column])
                cue = cue_in_zone(track.cues, mapping.cue, seconds)
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
