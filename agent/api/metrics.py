"""Prometheus text exposition (format 0.0.4) without a client library.

Each component returns its own list of :class:`Metric` (``metrics()``); the agent concatenates the
lists and :func:`render` merges the families several components add samples to (the stage times:
detect, embed, pose, rerank), so each family is declared once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class Metric:
    """One metric family: name, type (counter or gauge), help, and samples by label set."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((labels, float(value)))
        return self

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in sorted(labels.items()))
            lines.append(f"{self.name}{{{label_text}}} {value:g}" if label_text else f"{self.name} {value:g}")
        return "\n".join(lines)


class MetricSource(Protocol):
    """A component that reports its own numbers."""

    def metrics(self) -> list[Metric]: ...


def merge(metrics: Iterable[Metric]) -> list[Metric]:
    """One family per name, in first-seen order, with the samples of every part that reported it.

    Raises ValueError when two parts declare one name with another type or help (a programming error).
    """
    families: dict[str, Metric] = {}
    for metric in metrics:
        family = families.get(metric.name)
        if family is None:
            families[metric.name] = Metric(metric.name, metric.kind, metric.help, list(metric.samples))
        elif (family.kind, family.help) != (metric.kind, metric.help):
            raise ValueError(
                f"metric {metric.name} declared as {family.kind} {family.help!r} and as "
                f"{metric.kind} {metric.help!r}"
            )
        else:
            family.samples.extend(metric.samples)
    return list(families.values())


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text of ``metrics``, families of one name merged (:func:`merge`)."""
    return "\n".join(metric.render() for metric in merge(metrics)) + "\n"


def stage_metrics(stage: str, seconds: float, calls: int) -> list[Metric]:
    """Seconds spent in one pipeline stage and its calls (detect, embed, pose, rerank): each stage's
    component reports its own pair, :func:`render` puts them in one family each."""
    return [
        Metric("watchword_stage_seconds_total", "counter", "Seconds spent per pipeline stage").add(
            seconds, stage=stage
        ),
        Metric("watchword_stage_calls_total", "counter", "Calls per pipeline stage").add(calls, stage=stage),
    ]
