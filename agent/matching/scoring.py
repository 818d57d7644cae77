"""Calibrated, pooled (track, query) scores with hysteresis.

Raw CLIP cosines cluster tightly and drift with pose and lighting, so a per-frame cosine threshold
storms. Each sample is first calibrated against reference "normal" prompts: the probability, under a
softmax at the model's logit scale, that the query describes the crop better than any normal prompt.
Samples are then pooled over the track's life (a moving average plus the maximum over a sliding
window) and an enter/exit pair of thresholds keeps a pair from flapping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


def calibrated_scores(
    track_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    normal_embeddings: np.ndarray,
    logit_scale: float,
    normal_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and raw cosines for every (track, query) pair.

    Args:
        track_embeddings: (T, D) L2-normalised crop embeddings.
        query_embeddings: (Q, D) L2-normalised query embeddings.
        normal_embeddings: (Q, M, D) L2-normalised normal-prompt embeddings per query (M >= 1).
        logit_scale: the CLIP model's temperature (exp of its learned log scale, e.g. 100).
        normal_mask: (Q, M) booleans, False where a query has fewer than M normal prompts.

    Returns:
        (T, Q) probabilities in [0, 1] that the query beats all of its normal prompts, and the (T, Q)
        cosines of tracks and queries.
    """
    cosine = track_embeddings @ query_embeddings.T  # (T, Q)
    normal_cosine = np.einsum("td,qmd->tqm", track_embeddings, normal_embeddings)  # (T, Q, M)
    logits = logit_scale * np.concatenate([cosine[..., None], normal_cosine], axis=-1)
    if normal_mask is not None:
        keep = np.concatenate([np.ones((len(query_embeddings), 1), bool), normal_mask], axis=-1)
        logits = np.where(keep[None], logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    probability = weights[..., 0] / weights.sum(axis=-1)
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


@dataclass
class PairScore:
    """The running score of one (track, query) pair."""

    params: PoolingParams
    ema: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    active: bool = False
    pooled: float = 0.0
    last_cosine: float = 0.0
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=256))

    def add(self, time_s: float, probability: float, cosine: float) -> float:
        """Add a calibrated sample taken at ``time_s`` (seconds); returns the new pooled score."""
        params = self.params
        self.ema = (
            probability
            if self.ema is None
            else params.ema_alpha * probability + (1 - params.ema_alpha) * self.ema
        )
        self.samples.append((time_s, self.ema))
        while self.samples and self.samples[0][0] < time_s - params.window_s:
            self.samples.popleft()
        self.pooled = max(average for _, average in self.samples)
        self.last_cosine = cosine
        self.history.append((time_s, self.pooled))
        return self.pooled

    def update_state(self, threshold: float) -> bool:
        """Apply hysteresis at ``threshold``; returns whether the pair is active."""
        if self.active:
            self.active = self.pooled >= threshold - self.params.exit_margin
        else:
            self.active = self.pooled >= threshold
        return self.active
