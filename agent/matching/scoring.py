"""Calibrated, pooled (track, query) scores with hysteresis.

Raw CLIP cosines cluster tightly and drift with pose and lighting, so a per-frame cosine threshold
storms. Each sample is first calibrated against reference "normal" prompts: the probability, under a
softmax at the model's logit scale, that the query describes the crop better than any normal prompt.
Samples are then pooled over the track's life (a moving average plus the maximum over a sliding
window) and an enter/exit pair of thresholds keeps a pair from flapping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


def calibrated_scores(
    track_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    normal_bank: np.ndarray,
    normal_index: np.ndarray,
    logit_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and raw cosines for every (track, query) pair.

    Normal prompts are shared by most queries, so each distinct one is embedded and compared once:
    ``normal_bank`` holds them and ``normal_index`` says which belong to which query.

    Args:
        track_embeddings: (T, D) L2-normalised crop embeddings.
        query_embeddings: (Q, D) L2-normalised query embeddings.
        normal_bank: (K, D) L2-normalised embeddings of the distinct normal prompts.
        normal_index: (Q, M) rows of ``normal_bank`` for each query, -1 where a query has fewer than M.
        logit_scale: the CLIP model's temperature (exp of its learned log scale, e.g. 100).

    Returns:
        (T, Q) probabilities in [0, 1] that the query beats all of its normal prompts (softmax over
        the query and its normals at ``logit_scale``), and the (T, Q) cosines of tracks and queries.
    """
    cosine = track_embeddings @ query_embeddings.T  # (T, Q)
    bank_cosine = track_embeddings @ normal_bank.T  # (T, K)
    probability = np.empty(cosine.shape, np.float64)
    # Queries are scored in groups of equal normal-prompt count, so the (T, Q_g, M_g) tensor of each
    # group is as wide as its own prompts: one query with many prompts does not widen everyone's.
    valid = normal_index >= 0
    counts = valid.sum(axis=1)
    for count in np.unique(counts):
        rows = np.flatnonzero(counts == count)
        if count == 0:
            probability[:, rows] = 1.0
            continue
        index = normal_index[rows][valid[rows]].reshape(len(rows), int(count))  # (Q_g, M_g)
        normal_cosine = bank_cosine[:, index]  # (T, Q_g, M_g)
        # p = 1 / (1 + sum_m exp(scale * (normal_m - query)))
        with np.errstate(over="ignore"):
            terms = np.exp(logit_scale * (normal_cosine - cosine[:, rows, None]))
        probability[:, rows] = 1.0 / (1.0 + terms.sum(axis=-1))
    return probability.astype(np.float32), cosine.astype(np.float32)


@dataclass
class PoolingParams:
    """How samples are pooled and thresholded.

    Attributes:
        ema_alpha: weight of the newest sample in the moving average (0 < alpha <= 1).
        window_s: length of the sliding window over which the moving average's maximum is taken, seconds.
        exit_margin: a pair that entered at threshold t stays active until pooled < t - exit_margin.
    """

    ema_alpha: float = 0.3
    window_s: float = 10.0
    exit_margin: float = 0.1


class TrackScores:
    """The running scores of one track against every standing query, one column per query.

    Vectorised over queries: one sample updates all of a track's pairs at once, so a window costs
    numpy operations per track rather than Python work per (track, query) pair. Columns not scored
    yet (a new query, or one that does not apply to the track's camera) hold NaN.
    """

    def __init__(self, params: PoolingParams, size: int, history: int = 256) -> None:
        self.params = params
        self.ema = np.full(size, np.nan, np.float32)
        self.pooled = np.full(size, np.nan, np.float32)
        self.cosine = np.full(size, np.nan, np.float32)
        self.active = np.zeros(size, bool)
        self.entered = np.zeros(size, bool)  # became active at the latest sample
        self.ongoing = np.zeros(size, bool)  # the latest moving average is still above the exit level
        self.samples: deque[tuple[float, np.ndarray]] = deque()
        self.history: deque[tuple[float, np.ndarray]] = deque(maxlen=history)

    @property
    def size(self) -> int:
        return len(self.ema)

    @property
    def scored(self) -> np.ndarray:
        """Columns with at least one sample."""
        return ~np.isnan(self.pooled)

    def add(self, time_s: float, probability: np.ndarray, cosine: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Add calibrated samples taken at ``time_s`` (seconds) to the ``mask`` columns; returns pooled."""
        alpha = self.params.ema_alpha
        fresh = mask & np.isnan(self.ema)
        blended = alpha * probability + (1 - alpha) * self.ema
        self.ema = np.where(fresh, probability, np.where(mask, blended, self.ema)).astype(np.float32)
        self.cosine = np.where(mask, cosine, self.cosine).astype(np.float32)
        self.samples.append((time_s, self.ema.copy()))
        while self.samples and self.samples[0][0] < time_s - self.params.window_s:
            self.samples.popleft()
        stacked = np.stack([ema for _, ema in self.samples])
        with np.errstate(all="ignore"):
            self.pooled = np.fmax.reduce(stacked, axis=0).astype(np.float32)
        self.history.append((time_s, self.pooled.copy()))
        return self.pooled

    def update_state(self, thresholds: np.ndarray) -> np.ndarray:
        """Apply hysteresis at ``thresholds`` (one per column); returns the active columns.

        Also says which columns just ``entered`` (active now, not before) and which are
        ``ongoing``: the moving average itself, not only its held maximum, is still above the exit
        level, so the behaviour is still going on (an alert may open on it).
        """
        with np.errstate(invalid="ignore"):
            enter = self.pooled >= thresholds
            stay = self.pooled >= thresholds - self.params.exit_margin
            self.ongoing = (self.ema >= thresholds - self.params.exit_margin) & self.scored
        previous = self.active
        self.active = np.where(self.active, stay, enter) & self.scored
        self.entered = self.active & ~previous
        return self.active

    def column_history(self, column: int) -> list[tuple[float, float]]:
        """(time, pooled score) of one column, oldest first, where it was scored."""
        return [(t, float(pooled[column])) for t, pooled in self.history if not np.isnan(pooled[column])]

    def remap(self, source: np.ndarray) -> None:
        """Rearrange columns after the queries changed: new column i takes old column ``source[i]``
        (-1: a new, unscored column)."""
        keep = source >= 0
        take = np.where(keep, source, 0)

        def moved(values: np.ndarray, empty: float | bool) -> np.ndarray:
            if len(values) == 0:
                return np.full(len(source), empty, values.dtype)
            return np.where(keep, values[take], empty).astype(values.dtype)

        self.ema, self.pooled = moved(self.ema, np.nan), moved(self.pooled, np.nan)
        self.cosine, self.active = moved(self.cosine, np.nan), moved(self.active, False)
        self.entered, self.ongoing = moved(self.entered, False), moved(self.ongoing, False)
        self.samples = deque((t, moved(ema, np.nan)) for t, ema in self.samples)
        self.history = deque(((t, moved(p, np.nan)) for t, p in self.history), maxlen=self.history.maxlen)
