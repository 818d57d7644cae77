"""The INT8 parity gate of a detector: the quantized graph must find the fp32 graph's people.

Raw-output tolerances say little about what a site sees; this gate compares what the detector
reports. On held-out frames (never used for calibration) the fp32 graph's person boxes at the
detector's confidence are the reference; the INT8 graph's person boxes at the same confidence are
matched one to one (greedy, best IoU first) at IoU >= :data:`MATCH_IOU`. Recall (reference boxes
found) and precision (candidate boxes that match one) must both reach :data:`MIN_RECALL` and
:data:`MIN_PRECISION`, or the export is refused (:class:`export.errors.ParityError`, no manifest).

:func:`quantize_detector` quantizes, gates, and where the whole graph misses the gate tries again
with the sensitive layers (the stem that sees raw pixels, the detection head) kept in fp32, or with
other quantization options (an attempt's third element, keyword arguments of
:func:`export.quantize.quantize_int8`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import ParityError
from export.parity import ParityResult
from export.quantize import quantize_int8

logger = logging.getLogger(__name__)

MATCH_IOU = 0.5
MIN_RECALL = 0.98
MIN_PRECISION = 0.98


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``(N, 4)`` with every box of ``b`` ``(M, 4)``, xyxy: ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_count(reference: np.ndarray, candidate: np.ndarray, iou: float = MATCH_IOU) -> int:
    """How many boxes of ``reference`` pair one to one with a box of ``candidate`` at ``iou`` or more
    (greedy over the pairs, best IoU first)."""
    if not len(reference) or not len(candidate):
        return 0
    ious = box_iou(reference, candidate)
    pairs = np.argwhere(ious >= iou)
    order = np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_ref: set[int] = set()
    used_cand: set[int] = set()
    for i, j in pairs[order]:
        if i not in used_ref and j not in used_cand:
            used_ref.add(int(i))
            used_cand.add(int(j))
    return len(used_ref)


def person_agreement(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], iou: float = MATCH_IOU
) -> dict[str, float]:
    """Recall and precision of ``candidate``'s person boxes against ``reference``'s, frame by frame.

    Args:
        reference: per frame, the fp32 graph's person boxes ``(N, 4)`` xyxy (any unit, the same in both).
        candidate: per frame, the quantized graph's, in the same order.

    Returns:
        ``frames``, ``reference_people``, ``candidate_people``, ``matched``, ``recall``, ``precision``
        (1.0 where there is nothing to find or nothing was reported).
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference frames but {len(candidate)} candidate frames")
    matched = found = reported = 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref, cand = np.asarray(ref).reshape(-1, 4), np.asarray(cand).reshape(-1, 4)
        found += len(ref)
        reported += len(cand)
        matched += match_count(ref, cand, iou)
    return {
        "frames": float(len(reference)),
        "reference_people": float(found),
        "candidate_people": float(reported),
        "matched": float(matched),
        "recall": matched / found if found else 1.0,
        "precision": matched / reported if reported else 1.0,
    }


def check_people(
    graph: str,
    backend: str,
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    *,
    min_recall: float = MIN_RECALL,
    min_precision: float = MIN_PRECISION,
) -> ParityResult:
    """:func:`person_agreement`, refused below the limits.

    Raises:
        ParityError: recall or precision below its limit, or no reference person at all (a gate
            with nothing to find proves nothing).
    """
    metrics = person_agreement(reference, candidate)
    thresholds = {"min_recall": min_recall, "min_precision": min_precision, "match_iou": MATCH_IOU}
    if metrics["reference_people"] == 0:
        raise ParityError(
            graph, backend, "min_reference_people", 0.0, 1.0, "the held-out frames show no person to find"
        )
    detail = (
        f"{metrics['matched']:.0f} of the fp32 graph's {metrics['reference_people']:.0f} people matched, "
        f"{metrics['candidate_people']:.0f} reported, on {metrics['frames']:.0f} held-out frames"
    )
    if metrics["recall"] < min_recall:
        raise ParityError(graph, backend, "min_recall", metrics["recall"], min_recall, detail)
    if metrics["precision"] < min_precision:
        raise ParityError(graph, backend, "min_precision", metrics["precision"], min_precision, detail)
    return ParityResult(graph, backend, "int8", int(metrics["frames"]), metrics, thresholds)


PeopleOf = Callable[[Path], list[np.ndarray]]
"""A graph file -> per held-out frame, its person boxes ``(N, 4)`` at the detector's confidence."""

Attempt = tuple[str, Sequence[str]] | tuple[str, Sequence[str], Mapping[str, Any]]
"""``(label, node names kept in fp32)``, optionally with keyword arguments of
:func:`export.quantize.quantize_int8` (e.g. ``{"ops": ("Conv", "Clip")}``), recorded with the attempt."""


def attempt_options(attempt: Attempt) -> dict[str, Any]:
    """The keyword arguments of :func:`export.quantize.quantize_int8` an attempt carries (none: {})."""
    _label, _nodes, *more = attempt
    return dict(more[0]) if more else {}


def quantize_attempt(
    fp32: Path, out: Path, calibration: Iterable[Mapping[str, np.ndarray]], attempt: Attempt
) -> dict[str, object]:
    """Quantize ``fp32`` into ``out`` as ``attempt`` says (its fp32 nodes, its options), without the
    gate: what :func:`quantize_detector` does for each attempt, and what a benchmark times."""
    _label, nodes, *_more = attempt
    return quantize_int8(fp32, out, calibration, exclude_nodes=list(nodes), **attempt_options(attempt))


@dataclass
class GatedQuantization:
    """A quantized graph that passed the gate: what quantization did and the gate's figures."""

    quantization: dict[str, Any]
    parity: ParityResult
    attempts: list[dict[str, Any]]


def quantize_detector(
    fp32: Path,
    out: Path,
    calibration: Callable[[], Iterable[Mapping[str, np.ndarray]]],
    people_of: PeopleOf,
    fp32_layers: Sequence[Attempt],
    *,
    graph: str = "detector",
    min_recall: float = MIN_RECALL,
    min_precision: float = MIN_PRECISION,
) -> GatedQuantization:
    """Quantize ``fp32`` into ``out`` and gate it; on a miss, try the next set of fp32 layers.

    Args:
        fp32: the float graph (left as it is).
        out: where the passing INT8 graph goes (nothing is written there on refusal).
        calibration: makes the calibration input batches (called once per attempt).
        people_of: runs a graph on the held-out frames (see :data:`PeopleOf`).
        fp32_layers: the attempts in order (see :data:`Attempt`), e.g. ``("none", [])`` then
            ``("stem+head", [...])``.

    Raises:
        ParityError: no attempt reached the limits (the figures of the best attempt).
    """
    reference = people_of(fp32)
    attempts: list[dict[str, Any]] = []
    failures: list[ParityError] = []
    summaries: list[str] = []
    with tempfile.TemporaryDirectory(prefix="watchword-int8-") as work:
        for number, attempt in enumerate(fp32_layers):
            label, nodes, options = attempt[0], attempt[1], attempt_options(attempt)
            candidate_path = Path(work) / f"attempt-{number}.onnx"
            quantization = quantize_attempt(fp32, candidate_path, calibration(), attempt)
            candidate = people_of(candidate_path)
            metrics = person_agreement(reference, candidate)
            recorded = {
                key: list(value) if isinstance(value, list | tuple) else value
                for key, value in options.items()
            }
            attempts.append({"fp32_layers": label, "nodes": len(nodes), **recorded, **_rounded(metrics)})
            summaries.append(
                f"fp32 layers {label}{f' {recorded}' if recorded else ''}: recall {metrics['recall']:.4f}, "
                f"precision {metrics['precision']:.4f}"
            )
            logger.info("int8 gate: %s", summaries[-1])
            try:
                result = check_people(
                    graph,
                    "onnxruntime:cpu int8 vs fp32",
                    reference,
                    candidate,
                    min_recall=min_recall,
                    min_precision=min_precision,
                )
            except ParityError as exc:
                failures.append(exc)
                continue
            shutil.move(str(candidate_path), out)
            quantization["fp32_layers"] = label
            result.metrics["fp32_nodes"] = float(len(nodes))
            return GatedQuantization(quantization, result, attempts)
    best = max(failures, key=lambda exc: exc.value)
    raise ParityError(
        best.graph,
        best.backend,
        best.metric,
        best.value,
        best.threshold,
        "; ".join(summaries),
    )


def _rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    return {name: round(float(value), 4) for name, value in metrics.items()}
