"""The end-of-run lines about alerts: how many this run raised for which query, and where the evidence is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def alert_digest(
    opened: Sequence[tuple[int, str, int]],
    latest: dict[str, Any] | None,
    evidence_dir: Path,
    unevaluated: list[str],
) -> list[str]:
    """Lines for the run summary.

    Args:
        opened: this run's alerts per query: (query id, query text, alerts).
        latest: the latest payload of this run's newest alert.
        evidence_dir: where the evidence bundles are.
        unevaluated: queries nothing evaluated (no CLIP model and no behaviour cue).
    """
    lines = []
    total = sum(count for _, _, count in opened)
    if total:
        detail = "; ".join(f"query {query_id} {text!r}: {count}" for query_id, text, count in opened)
        lines.append(f"alerts: {total} raised ({detail}); evidence in {evidence_dir}")
        evidence = (latest or {}).get("evidence") or {}
        if latest is not None and evidence.get("frame"):
            where = evidence_dir / evidence["frame"]
            lines.append(f"latest: {latest.get('query')!r} on track {latest.get('track_id')}: {where}")
    else:
        lines.append("alerts: none raised")
    if unevaluated:
        names = "; ".join(unevaluated)
        lines.append(f"not evaluated (no CLIP model, and they map to no behaviour cue): {names}")
    return lines
