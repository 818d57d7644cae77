"""The pooled (track, query) scores of every live track, fed one calibrated sample at a time.

Shared by the live :class:`~agent.matching.matcher.Matcher` (samples from CLIP) and by
``watchword eval replay --frames`` (samples read back from frame records), so both pool, apply
hysteresis and select candidates with the same code. Sample probabilities are rounded to 6
decimals before pooling, the precision frame records keep, so a replay pools exactly what the live
run pooled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.alerts.episodes import AlertStateView
from agent.matching.scoring import PoolingParams, TrackScores
from agent.matching.selection import Pick, WindowClock, select
from agent.queries import Query
from agent.types import Candidate, Frame

SAMPLE_DECIMALS = 6


def quantise(probability: np.ndarray) -> np.ndarray:
    """Probabilities as frame records keep them: rounded to 6 decimals (float64)."""
    return np.round(np.asarray(probability, np.float64), SAMPLE_DECIMALS)


@dataclass
class TrackState:
    """What the matcher keeps of one track."""

    camera_id: str
    track_id: int
    last_embed_time: float = -float("inf")  # media seconds
    last_aspect: float = 0.0
    embeddings: deque[np.ndarray] = field(default_factory=deque)
    frame: Frame | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    scores: TrackScores | None = None
    # (query id, text hash) of each column of ``scores``
    columns: list[tuple[int, str]] = field(default_factory=list)

    @property
    def pooled(self) -> np.ndarray:
        return self.scores.pooled if self.scores is not None else np.zeros(0, np.float32)

    @property
    def active(self) -> np.ndarray:
        return self.scores.active if self.scores is not None else np.zeros(0, bool)

    @property
    def ongoing(self) -> np.ndarray:
        return self.scores.ongoing if self.scores is not None else np.zeros(0, bool)


class TrackBook:
    """Tracks by (camera, track id), their pooled scores over the current query columns, and windows.

    Args:
        params: pooling and hysteresis settings.
        window_s: candidates are selected once per this many media seconds, per camera.
        top_k: candidates per (camera, query) incident and window (its best tracks).
        history: crop embeddings kept per track.
        select_on_entry: a pair that becomes active brings its camera's window forward to that
            frame (the window clock restarts there), so an alert does not wait up to ``window_s``.
    """

    def __init__(
        self,
        params: PoolingParams,
        window_s: float,
        top_k: int = 1,
        history: int = 16,
        select_on_entry: bool = False,
    ) -> None:
        self.params = params
        self.select_on_entry = select_on_entry
        self._entered: set[str] = set()  # cameras with a pair that became active since their window
        self.top_k = top_k
        self.history = history
        self.clock = WindowClock(window_s)
        self.tracks: dict[tuple[str, int], TrackState] = {}
        self.queries: list[Query] = []
        self.columns: list[tuple[int, str]] = []
        self.thresholds = np.zeros(0, np.float32)
        self._masks: dict[str, np.ndarray] = {}
        self._names: np.ndarray = np.zeros(0, object)

    def set_queries(
        self, queries: Sequence[Query], thresholds: np.ndarray, text_hashes: Sequence[str]
    ) -> None:
        """Adopt a new query list: each track's columns move to the new order; an edited text
        (another hash) and a new query start unscored."""
        self.queries = list(queries)
        self.thresholds = np.asarray(thresholds, np.float32)
        columns = [(q.id, h) for q, h in zip(self.queries, text_hashes, strict=True)]
        self.columns = columns
        self._masks.clear()
        self._names = np.array([str(q.id) for q in self.queries], dtype=object)
        for state in self.tracks.values():
            if state.scores is None:
                continue
            old = {key: i for i, key in enumerate(state.columns)}
            state.scores.remap(np.array([old.get(key, -1) for key in columns], np.int64))
            state.columns = columns

    def mask(self, camera_id: str) -> np.ndarray:
        """Which query columns apply to a camera (cached until the queries change)."""
        mask = self._masks.get(camera_id)
        if mask is None:
            mask = np.array([q.applies_to(camera_id) for q in self.queries], bool)
            self._masks[camera_id] = mask
        return mask

    def get(self, camera_id: str, track_id: int) -> TrackState:
        key = (camera_id, int(track_id))
        state = self.tracks.get(key)
        if state is None:
            state = self.tracks[key] = TrackState(camera_id, int(track_id))
            state.embeddings = deque(maxlen=self.history)
        return state

    def remove(self, camera_id: str, track_id: int) -> None:
        self.tracks.pop((camera_id, int(track_id)), None)

    def forget_camera(self, camera_id: str) -> None:
        """Drop a camera's tracks and window (it changed or was removed)."""
        self.tracks = {k: v for k, v in self.tracks.items() if k[0] != camera_id}
        self.clock.forget(camera_id)
        self._entered.discard(camera_id)

    def add_sample(
        self,
        state: TrackState,
        time_s: float,
        probability: np.ndarray,
        cosine: np.ndarray,
        *,
        only_new: bool = False,
        columns: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Pool one sample taken at media ``time_s`` into the columns that apply to the track's camera
        (only into ``columns`` where given; with ``only_new``, only into columns not scored yet);
        returns {query id: p} of what it added."""
        if state.scores is None:
            state.scores = TrackScores(self.params, len(self.queries))
            state.columns = list(self.columns)
        mask = self.mask(state.camera_id)
        if columns is not None:
            mask = mask & columns
        if only_new:
            mask = mask & ~state.scores.scored
        recorded = quantise(probability)
        state.scores.add(time_s, recorded.astype(np.float32), np.asarray(cosine, np.float32), mask)
        state.scores.update_state(self.thresholds)
        if self.select_on_entry and (state.scores.entered & mask).any():
            self._entered.add(state.camera_id)
        names = self._names[mask].tolist()
        return dict(zip(names, recorded[mask].tolist(), strict=True))

    def frame_scores(self, camera_id: str, track_ids: Sequence[int]) -> dict[str, dict[str, float]]:
        """Pooled scores by track id and query id (strings, for JSON) of the given tracks."""
        scores: dict[str, dict[str, float]] = {}
        for track_id in track_ids:
            state = self.tracks.get((camera_id, int(track_id)))
            if state is None or state.scores is None:
                continue
            scored = state.scores.scored
            if scored.any():
                names = self._names[scored]
                values = np.round(state.scores.pooled[scored].astype(np.float64), 4)
                scores[str(int(track_id))] = dict(zip(names.tolist(), values.tolist(), strict=True))
        return scores

    def window_due(self, camera_id: str, now: float) -> bool:
        """True at a window boundary of the camera's media clock (once per window), or at once when
        a pair of the camera became active (``select_on_entry``)."""
        if camera_id in self._entered:
            self._entered.discard(camera_id)
            self.clock.restart(camera_id, now)
            return True
        return self.clock.due(camera_id, now)

    def select(
        self,
        camera_id: str,
        now: float,
        alert_state: AlertStateView,
        pending: frozenset[tuple[str, int, int]] = frozenset(),
        held: Callable[[tuple[str, int, int], float], bool] | None = None,
    ) -> list[Pick]:
        """The camera's picks at media time ``now`` (see :func:`~agent.matching.selection.select`)."""
        tracks = [s for s in self.tracks.values() if s.camera_id == camera_id and s.scores is not None]
        return select(camera_id, now, tracks, self.queries, alert_state, pending, self.top_k, held)

    def candidate(self, camera_id: str, pick: Pick, now: float, model_versions: dict[str, str]) -> Candidate:
        """The candidate of a pick, chosen at media time ``now``, with its latest sample's frame and box."""
        state = self.tracks[(camera_id, pick.track_id)]
        assert state.frame is not None and state.scores is not None
        query = self.queries[pick.column]
        return Candidate(
            camera_id=camera_id,
            track_id=state.track_id,
            query_id=query.id,
            query_text=query.text,
            score=pick.score,
            cosine=float(state.scores.cosine[pick.column]),
            wall_time=state.frame.wall_time,
            frame_index=state.frame.index,
            box=state.box,
            frame=state.frame.image,
            severity=query.severity,
            score_history=state.scores.column_history(pick.column),
            model_versions=dict(model_versions),
            media_time=now,
            cooldown_s=query.cooldown_s,
        )
