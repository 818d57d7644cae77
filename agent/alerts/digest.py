"""The end-of-run lines about alerts: how many were raised for which query, and where the evidence is."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def alert_digest(payloads: list[dict[str, Any]], evidence_dir: Path, unevaluated: list[str]) -> list[str]:
    """Lines for the run summary from each alert's latest payload (newest first)."""
    lines = []
    if payloads:
        by_query = Counter(f"{p.get('query_id')} {p.get('query')!r}" for p in payloads)
        detail = "; ".join(f"query {name}: {count}" for name, count in sorted(by_query.items()))
        lines.append(f"alerts: {len(payloads)} raised ({detail}); evidence in {evidence_dir}")
        newest = payloads[0]
        evidence = newest.get("evidence") or {}
        if evidence.get("frame"):
            where = evidence_dir / evidence["frame"]
            lines.append(f"latest: {newest.get('query')!r} on track {newest.get('track_id')}: {where}")
    else:
        lines.append("alerts: none raised")
    if unevaluated:
        names = "; ".join(unevaluated)
        lines.append(f"not evaluated (no CLIP model, and they map to no behaviour cue): {names}")
    return lines
