"""Typed errors of the exporters; each message says what failed and what to do about it."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export that could not be completed; no manifest was written."""


class SourceModelError(ExportError):
    """The source model is missing, not in the local cache, or of an unsupported kind."""


class CalibrationError(ExportError):
    """INT8 calibration data that is missing, unreadable or too small."""


class ParityError(ExportError):
    """The exported graph disagrees with the torch model beyond the tolerance of its precision.

    Attributes:
        graph: the graph that failed (``"vision"``, ``"text"``, ``"detector"``).
        backend: the runtime that produced the disagreeing outputs.
        metric: what was compared (``"min_cosine"``, ``"max_box_px"``, ``"max_score_abs"``).
        value: the measured figure.
        threshold: the tolerance it violated.
    """

    def __init__(
        self, graph: str, backend: str, metric: str, value: float, threshold: float, detail: str = ""
    ) -> None:
        self.graph, self.backend, self.metric, self.value, self.threshold = (
            graph,
            backend,
            metric,
            value,
            threshold,
        )
        comparison = ">=" if metric.startswith("min") else "<="
        super().__init__(
            f"parity check failed for the {graph} graph on {backend}: {metric} {value:.6g}, "
            f"need {comparison} {threshold:.6g}{': ' + detail if detail else ''}. "
            "The export was not completed (no manifest)."
        )


class ShapeMismatchError(ParityError):
    """The exported graph's outputs have another shape than the torch model's."""

    def __init__(self, graph: str, backend: str, expected: tuple[int, ...], got: tuple[int, ...]) -> None:
        ExportError.__init__(
            self,
            f"parity check failed for the {graph} graph on {backend}: output shape {got}, "
            f"the torch model gives {expected}. The export was not completed (no manifest).",
        )
        self.graph, self.backend, self.metric, self.value, self.threshold = graph, backend, "shape", 0.0, 0.0
