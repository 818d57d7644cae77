"""Parity of an exported graph against the torch model it came from, on fresh inputs.

Embedding graphs are compared row by row by cosine similarity; detection heads by their box
coordinates (pixels) and class scores. A result below its tolerance raises :class:`ParityError`;
a passing result is recorded in the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.base import Engine
from export.errors import ParityError, ShapeMismatchError
from export.specs import ExportSpec, Tolerance

logger = logging.getLogger(__name__)

SCORE_FLOOR = 0.05
"""Anchors whose best class score stays below this in both outputs are ignored for box errors ..."""
TOP_ANCHORS = 50
"""... except each image's this many best-scoring anchors in the reference."""


@dataclass
class ParityResult:
    """A passed parity check: which graph, runtime and precision, on how many inputs, with which figures."""

    graph: str
    backend: str
    precision: str
    samples: int
    metrics: dict[str, float]
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's record: the fields, then each metric under its name, or ``<name>_metric``
        where that name is a field (the people gate's ``precision`` beside the graph's ``int8``)."""
        fields = {
            "graph": self.graph,
            "backend": self.backend,
            "precision": self.precision,
            "samples": self.samples,
        }
        metrics = {
            (f"{name}_metric" if name in fields or name == "thresholds" else name): round(value, 7)
            for name, value in self.metrics.items()
        }
        return {**fields, **metrics, "thresholds": self.thresholds}


def _check_shapes(graph: str, backend: str, reference: np.ndarray, candidate: np.ndarray) -> None:
    if reference.shape != candidate.shape:
        raise ShapeMismatchError(graph, backend, tuple(reference.shape), tuple(candidate.shape))
    if not np.all(np.isfinite(candidate)):
        raise ParityError(graph, backend, "finite_fraction", float(np.isfinite(candidate).mean()), 1.0)


def embedding_parity(
    graph: str,
    backend: str,
    precision: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    tolerance: Tolerance,
) -> ParityResult:
    """Cosine of each candidate row with its reference row; the smallest must meet the tolerance."""
    _check_shapes(graph, backend, reference, candidate)
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    cand = candidate.astype(np.float64).reshape(len(candidate), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = (ref * cand).sum(axis=1) / np.maximum(norms, 1e-30)
    result = ParityResult(
        graph,
        backend,
        precision,
        len(ref),
        {"min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean())},
        {"min_cosine": float(tolerance.min_cosine or -1.0)},
    )
    if tolerance.min_cosine is not None and cosine.min() < tolerance.min_cosine:
        worst = int(cosine.argmin())
        raise ParityError(
            graph, backend, "min_cosine", float(cosine.min()), tolerance.min_cosine, f"worst row {worst}"
        )
    return result


def detection_parity(
    graph: str,
    backend: str,
    precision: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    tolerance: Tolerance,
) -> ParityResult:
    """Compare raw detection heads of shape (B, 4 + classes, anchors): boxes in pixels, scores in [0, 1]."""
    _check_shapes(graph, backend, reference, candidate)
    ref_scores, cand_scores = reference[:, 4:, :], candidate[:, 4:, :]
    score_error = float(np.abs(ref_scores - cand_scores).max()) if ref_scores.size else 0.0
    best = np.maximum(ref_scores.max(axis=1), cand_scores.max(axis=1))  # (B, anchors)
    relevant = best > SCORE_FLOOR
    # The best-scoring anchors of each image count even when nothing passes the floor (an untrained head).
    top = np.argsort(-ref_scores.max(axis=1), axis=1)[:, :TOP_ANCHORS]
    np.put_along_axis(relevant, top, True, axis=1)
    box_diff = np.abs(reference[:, :4, :] - candidate[:, :4, :]).max(axis=1)  # (B, anchors)
    box_error = float(box_diff[relevant].max()) if relevant.any() else 0.0
    metrics = {"max_box_px": box_error, "max_score_abs": score_error, "scored_anchors": float(relevant.sum())}
    thresholds = {
        name: float(value)
        for name, value in (("max_box_px", tolerance.max_box_px), ("max_score_abs", tolerance.max_score_abs))
        if value is not None
    }
    result = ParityResult(graph, backend, precision, len(reference), metrics, thresholds)
    for name, limit in thresholds.items():
        if metrics[name] > limit:
            raise ParityError(graph, backend, name, metrics[name], limit)
    return result


def check_parity(
    spec: ExportSpec,
    precision: str,
    reference: Engine,
    candidate: Engine,
    batches: Iterable[Mapping[str, np.ndarray]],
    kind: str = "embedding",
) -> ParityResult:
    """Run ``batches`` through both engines and compare their first outputs under ``spec``'s tolerance.

    Args:
        spec: the graph's export spec.
        precision: the candidate's precision (selects the tolerance).
        reference: the torch model.
        candidate: the exported graph on its runtime.
        batches: fresh inputs, never the ones used for tracing or calibration.
        kind: ``"embedding"`` (cosine) or ``"detection"`` (boxes and scores).

    Raises:
        ParityError: the figures miss the tolerance; ShapeMismatchError: the output shapes differ.
    """
    output = spec.output_names[0]
    expected, got = [], []
    for batch in batches:
        inputs = {name: np.asarray(value) for name, value in batch.items()}
        expected.append(reference.infer(inputs)[output])
        got.append(candidate.infer(inputs)[output])
    if not expected:
        raise ValueError("parity needs at least one batch of inputs")
    reference_out = np.concatenate(expected)
    candidate_out = np.concatenate(got)
    backend = candidate.name
    compare = embedding_parity if kind == "embedding" else detection_parity
    result = compare(
        spec.graph, backend, precision, reference_out, candidate_out, spec.tolerance_for(precision)
    )
    logger.info("parity %s %s on %s: %s", spec.graph, precision, backend, result.metrics)
    return result
