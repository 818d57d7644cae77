"""Thresholds from footage known to be normal: at most N false alarms per hour.

Every track of the footage is scored against every enabled query as the live agent would. A pair
alerts when its pooled score first reaches the threshold, so what matters per track is the highest
pooled score it ever reached. For a target of N false alarms per hour over H hours of footage, the
threshold is set just above the (floor(N * H) + 1)-th highest of those per-track maxima: at most
floor(N * H) normal tracks would have raised an alert (fewer after cooldowns merge some).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agent.matching.trackbook import TrackBook
from agent.types import FrameResult

THRESHOLD_STEP = 1e-3


def minimum_footage_hours(target_per_hour: float) -> float:
    """The least footage on which a target of N false alarms per hour allows one alarm: 1/N hours.

    On less, ``floor(N * H)`` is 0 and the thresholds go above every normal track seen: stricter
    than asked, and set by the single most extreme track. 0 for a target of 0 (any footage will do).
    """
    return 0.0 if target_per_hour <= 0 else 1.0 / target_per_hour


def footage_warning(hours: float, target_per_hour: float) -> str | None:
    """A sentence saying why ``hours`` of footage cannot honour the target, or None when it can."""
    needed = minimum_footage_hours(target_per_hour)
    if needed <= 0 or hours >= needed:
        return None
    return (
        f"{_duration(hours)} of footage cannot honour {target_per_hour:g} false alarm(s) per hour: it "
        f"allows floor({target_per_hour:g} x {hours:.3g} h) = {math.floor(target_per_hour * hours)} alarms, "
        f"so every threshold is set above the highest score any normal track reached (stricter than asked). "
        f"Calibrate on at least {_duration(needed)} of normal footage for this target."
    )


def _duration(hours: float) -> str:
    seconds = hours * 3600.0
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{hours:.3g} h"


@dataclass
class QueryCalibration:
    """The outcome for one query."""

    query_id: int
    text: str
    track_maxima: list[float]
    allowed_alarms: int
    threshold: float
    expected_alarms: int

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.track_maxima, q)) if self.track_maxima else float("nan")


def choose_threshold(maxima: list[float], allowed: int, floor: float) -> tuple[float, int]:
    """The lowest threshold (not below ``floor``) that at most ``allowed`` of ``maxima`` reach.

    Returns the threshold and how many maxima reach it.
    """
    ordered = sorted(maxima, reverse=True)
    # with more alarms allowed than tracks, any threshold meets the target: keep the floor
    threshold = max(floor, ordered[allowed] + THRESHOLD_STEP) if allowed < len(ordered) else floor
    threshold = min(threshold, 1.0 - THRESHOLD_STEP)
    return threshold, sum(1 for m in ordered if m >= threshold)


@dataclass
class ScoreCollector:
    """An analyser placed after the matcher: records each pair's highest pooled score.

    ``book`` is the matcher's track book: CLIP scores (maybe with cues fused in) or, without CLIP,
    the cue values of the queries that map to a cue; a threshold applies to either the same way.
    """

    book: TrackBook
    maxima: dict[tuple[str, int, int], float] = field(default_factory=dict)

    def process(self, results: list[FrameResult]) -> None:
        for (camera_id, track_id), state in self.book.tracks.items():
            if state.scores is None:
                continue
            for column in np.flatnonzero(state.scores.scored):
                key = (camera_id, track_id, state.columns[column][0])
                self.maxima[key] = max(self.maxima.get(key, 0.0), float(state.scores.pooled[column]))

    def calibrate(self, hours: float, target_per_hour: float, floor: float) -> list[QueryCalibration]:
        allowed = math.floor(target_per_hour * hours)
        outcomes = []
        for query in self.book.queries:
            maxima = [value for (_, _, q), value in self.maxima.items() if q == query.id]
            threshold, expected = choose_threshold(maxima, allowed, floor)
            outcomes.append(QueryCalibration(query.id, query.text, maxima, allowed, threshold, expected))
        return outcomes
