"""Alert quality against labelled events: detections, misses, false alarms per hour, duplicates,
time to alert.

A label is one event a line, ``{"camera": "c1", "query_id": 1, "start_s": 12.0, "end_s": 30.5}``
in media seconds (the video's pts). An alert matches an event of the same camera and query whose
interval, widened by the tolerance on both sides, contains the alert's open time. The first alert
on an event detects it; every further one is a duplicate; an alert on no event is a false alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.evaluation.replay_frames import ReplayedAlert


class LabelError(ValueError):
    """A labels file that cannot be read; the message names the line."""


@dataclass(frozen=True)
class LabelledEvent:
    camera: str
    query_id: int
    start_s: float
    end_s: float


def read_labels(path: Path) -> list[LabelledEvent]:
    """Labelled events from a JSON-lines file (see the module docstring)."""
    events = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                event = LabelledEvent(
                    str(row["camera"]), int(row["query_id"]), float(row["start_s"]), float(row["end_s"])
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise LabelError(
                    f"{path}:{number}: expected {{camera, query_id, start_s, end_s}}: {exc}"
                ) from exc
            if event.end_s < event.start_s:
                raise LabelError(f"{path}:{number}: end_s is before start_s")
            events.append(event)
    return events


def _summary(
    events: int, detected: int, false_alerts: int, duplicates: int, delays: list[float], hours: float
) -> dict[str, Any]:
    def quantile(q: float) -> float | None:
        return round(float(np.quantile(delays, q)), 3) if delays else None

    return {
        "events": events,
        "detected": detected,
        "missed": events - detected,
        "false_alerts": false_alerts,
        "false_alerts_per_hour": round(false_alerts / hours, 3) if hours > 0 else None,
        "duplicate_alerts": duplicates,
        "time_to_alert_s": {"median": quantile(0.5), "p95": quantile(0.95)},
    }


def alert_report(
    alerts: list[ReplayedAlert],
    labels: list[LabelledEvent],
    footage_s: float,
    tolerance_s: float = 2.0,
    query_ids: Iterable[int] = (),
) -> dict[str, Any]:
    """The report ``watchword eval replay --report`` writes (keys in the module docstring of
    :mod:`agent.commands.replay`), per query and overall."""
    hours = footage_s / 3600.0
    first_alert: dict[int, float] = {}  # label index -> open time of its first alert
    duplicates: dict[int, int] = {}
    false_alerts: dict[int, int] = {}
    for alert in sorted(alerts, key=lambda a: a.time_s):
        hits = [
            i
            for i, e in enumerate(labels)
            if e.camera == alert.camera
            and e.query_id == alert.query_id
            and e.start_s - tolerance_s <= alert.time_s <= e.end_s + tolerance_s
        ]
        fresh = [i for i in hits if i not in first_alert]
        if fresh:
            first_alert[min(fresh, key=lambda i: labels[i].start_s)] = alert.time_s
        elif hits:
            duplicates[alert.query_id] = duplicates.get(alert.query_id, 0) + 1
        else:
            false_alerts[alert.query_id] = false_alerts.get(alert.query_id, 0) + 1
    ids = sorted({*query_ids, *(e.query_id for e in labels), *(a.query_id for a in alerts)})
    queries: dict[str, Any] = {}
    all_delays: list[float] = []
    for query_id in ids:
        mine = [i for i, e in enumerate(labels) if e.query_id == query_id]
        delays = [first_alert[i] - labels[i].start_s for i in mine if i in first_alert]
        all_delays += delays
        queries[str(query_id)] = _summary(
            len(mine),
            len(delays),
            false_alerts.get(query_id, 0),
            duplicates.get(query_id, 0),
            delays,
            hours,
        )
    overall = _summary(
        len(labels),
        len(first_alert),
        sum(false_alerts.values()),
        sum(duplicates.values()),
        all_delays,
        hours,
    )
    return {
        "queries": queries,
        "overall": overall,
        "footage_hours": round(hours, 6),
        "alerts": [
            alert.as_dict() for alert in sorted(alerts, key=lambda a: (a.time_s, a.camera, a.query_id))
        ],
    }


def format_table(report: dict[str, Any], names: dict[int, str] | None = None) -> str:
    """The report as a terminal table, one row per query and one overall."""
    names = names or {}
    header = f"{'query':32s} {'events':>6s} {'det':>4s} {'miss':>4s} {'false':>5s} {'FA/h':>7s} {'dup':>4s}"
    header += f" {'TTA med':>8s} {'TTA p95':>8s}"
    rows = [header, "-" * len(header)]

    def row(label: str, entry: dict[str, Any]) -> str:
        rate = entry["false_alerts_per_hour"]
        tta = entry["time_to_alert_s"]

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return (
            f"{label[:32]:32s} {entry['events']:6d} {entry['detected']:4d} {entry['missed']:4d}"
            f" {entry['false_alerts']:5d} {'-' if rate is None else f'{rate:.2f}':>7s}"
            f" {entry['duplicate_alerts']:4d} {seconds(tta['median']):>8s} {seconds(tta['p95']):>8s}"
        )

    for key, entry in report["queries"].items():
        name = names.get(int(key))
        rows.append(row(f"{key} {name}" if name else key, entry))
    rows.append(row("overall", report["overall"]))
    rows.append(f"footage: {report['footage_hours'] * 60:.1f} min, alerts: {len(report['alerts'])}")
    return "\n".join(rows)
