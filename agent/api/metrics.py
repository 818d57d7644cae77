"""Prometheus text exposition (format 0.0.4) without a client library."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


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


def render(metrics: Iterable[Metric]) -> str:
    return "\n".join(metric.render() for metric in metrics) + "\n"
