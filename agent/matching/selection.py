"""Fair candidate selection, once per window of each camera's media time.

At a window boundary every standing query of a camera is looked at on its own, so no query and no
busy camera can take another's place:

* a (camera, query, track) with an open episode updates that episode;
* one in cooldown (the query's ``cooldown_s``, else ``alerts.cooldown_s``) is skipped;
* one already waiting for the re-ranker (pending) is skipped;
* one the re-ranker rejected is skipped until the rejection expires or its score rises
  (:mod:`agent.decision.verdicts`);
* one whose latest moving average fell below the exit level opens nothing: the pooled maximum
  held over ``pool_window_s`` keeps it active, but the behaviour has stopped;
* none of these takes a candidate slot. Of the remaining active tracks of each (camera, query), the
  ``top_k`` best (default 1: the incident's best track) become candidates.

Candidates are handed on ordered by severity, then score; the LMM budget behind the priority queue,
not a cap here, limits how much is verified per window. Hence the guarantee the README states: a
(camera, query) whose pooled score is above its threshold for two windows becomes a candidate within
the next two windows, whatever the other queries do (unless each of its active tracks is already
alerting or cooling down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agent.alerts.episodes import AlertStateView, PairState
from agent.queries import Query
from agent.queries.registry import SEVERITIES


def severity_rank(severity: str) -> int:
    """Higher is more urgent: info 0, warning 1, critical 2 (an unknown label ranks as warning)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 1


class ScoredTrack(Protocol):
    """What selection needs of a track: its id and, per query column, pooled score and activity."""

    @property
    def track_id(self) -> int: ...

    @property
    def pooled(self) -> np.ndarray: ...

    @property
    def active(self) -> np.ndarray: ...

    @property
    def ongoing(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Pick:
    """One selected (track, query column): ``opens`` a new alert if accepted, else updates one."""

    track_id: int
    column: int
    score: float
    opens: bool


@dataclass
class WindowClock:
    """Per-camera windows of ``window_s`` media seconds; a camera's clock jumping back restarts it."""

    window_s: float
    _start: dict[str, float] = field(default_factory=dict)

    def due(self, camera_id: str, now: float) -> bool:
        """True once per window, at the first frame ``window_s`` after the previous boundary."""
        start = self._start.get(camera_id)
        if start is None or now < start:
            self._start[camera_id] = now
            return False
        if now - start < self.window_s:
            return False
        self._start[camera_id] = now
        return True

    def restart(self, camera_id: str, now: float) -> None:
        """Start the camera's next window at ``now`` (a window was held early)."""
        self._start[camera_id] = now

    def forget(self, camera_id: str) -> None:
        self._start.pop(camera_id, None)


def select(
    camera_id: str,
    now: float,
    tracks: Iterable[ScoredTrack],
    queries: Sequence[Query],
    alert_state: AlertStateView,
    pending: frozenset[tuple[str, int, int]] = frozenset(),
    top_k: int = 1,
    held: Callable[[tuple[str, int, int], float], bool] | None = None,
) -> list[Pick]:
    """One camera's picks at media time ``now``: updates first, then opens by severity and score.

    ``tracks`` hold one column per entry of ``queries``. ``held(key, score)`` says whether an idle
    key is held back by what the LMM said of it (a remembered rejection): it takes no slot either.
    """
    by_column: dict[int, list[tuple[float, int]]] = {}
    ongoing: set[tuple[int, int]] = set()
    for track in tracks:
        active = track.active
        for column in np.flatnonzero(active[: len(queries)]).tolist():
            by_column.setdefault(column, []).append((float(track.pooled[column]), track.track_id))
            if bool(track.ongoing[column]):
                ongoing.add((track.track_id, column))
    updates: list[Pick] = []
    opens: list[tuple[int, Pick]] = []
    for column, scored in by_column.items():
        query = queries[column]
        eligible: list[tuple[float, int]] = []
        for score, track_id in scored:
            key = (camera_id, query.id, track_id)
            state = alert_state.state(key, now, query.cooldown_s)
            if state is PairState.OPEN:
                updates.append(Pick(track_id, column, score, opens=False))
            elif state is PairState.IDLE and key not in pending and (held is None or not held(key, score)):
                eligible.append((score, track_id))
        eligible.sort(key=lambda item: (-item[0], item[1]))
        rank = severity_rank(query.severity)
        opens += [(rank, Pick(track_id, column, score, True)) for score, track_id in eligible[:top_k]]
    opens.sort(key=lambda item: (-item[0], -item[1].score, item[1].column, item[1].track_id))
    updates.sort(key=lambda pick: (pick.column, pick.track_id))
    return updates + [pick for _, pick in opens]
