"""The alert event payload: the JSON every sink sends and the alert history stores.

Fields (times are UNIX seconds, with an ISO 8601 UTC twin ending in ``_iso``)::

    schema, event_id ("<alert_id>/<seq>", what receivers drop duplicates by), alert_id, seq,
    event (opened | updated | closed), site, camera, track_id, query_id, query, severity,
    score, peak_score, fused_score, verified, verification (verified | rejected | unverified, or
    null when not re-ranked), verification_reason (no_answer | budget | deadline | error, with
    unverified), cosine, candidates, started_at, updated_at, ended_at,
    close_reason, frame_index, box ([x1, y1, x2, y2] pixels), evidence ({crop, frame, json} paths
    relative to the evidence folder, or null), model_versions, rationale,
    media ({started_s, updated_s, ended_s}: the same moments on the decision clock, the video's pts
    for a file, UNIX seconds for a live camera)
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import numpy as np

from agent.alerts.episodes import AlertEvent, AlertEventKind, CloseReason
from agent.alerts.evidence import EvidencePaths

SCHEMA = 1


def iso_time(seconds: float | None) -> str | None:
    """ISO 8601 UTC text of UNIX seconds (millisecond precision), or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types; NaN/inf become None."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def event_id(alert_id: str, seq: int) -> str:
    """The id of one event of an alert, unique and stable across retries and restarts."""
    return f"{alert_id}/{seq}"


def _times(payload: dict[str, Any], **seconds: float | None) -> None:
    for name, value in seconds.items():
        payload[name] = None if value is None else round(value, 3)
        payload[f"{name}_iso"] = iso_time(value)


def build_payload(event: AlertEvent, site: str, evidence: EvidencePaths | None) -> dict[str, Any]:
    """The payload of one episode event."""
    episode, latest = event.episode, event.episode.latest
    payload: dict[str, Any] = {
        "schema": SCHEMA,
        "event_id": event_id(episode.alert_id, episode.seq),
        "alert_id": episode.alert_id,
        "seq": episode.seq,
        "event": event.kind.value,
        "site": site,
        "camera": episode.camera_id,
        "track_id": episode.track_id,
        "query_id": episode.query_id,
        "query": episode.query_text,
        "severity": episode.severity,
        "score": round(latest.score, 4),
        "peak_score": round(episode.peak_score, 4),
        "fused_score": None if latest.fused_score is None else round(latest.fused_score, 4),
        "verified": latest.verified,
        "verification": latest.verification,
        "verification_reason": latest.verification_reason,
        "cosine": round(latest.cosine, 4),
        "candidates": episode.candidates,
        "close_reason": None if episode.close_reason is None else episode.close_reason.value,
        "frame_index": latest.frame_index,
        "box": [round(v, 1) for v in latest.box],
        "evidence": None if evidence is None else evidence.as_dict(),
        "model_versions": dict(latest.model_versions),
        "rationale": latest.rationale,
    }
    payload["media"] = {
        "started_s": round(episode.started_at, 3),
        "updated_s": round(episode.last_seen, 3),
        "ended_s": None if episode.ended_at is None else round(episode.ended_at, 3),
    }
    _times(
        payload,
        started_at=episode.started_wall,
        updated_at=episode.last_seen_wall,
        ended_at=episode.ended_wall,
    )
    result: dict[str, Any] = jsonable(payload)
    return result


def closed_after_restart(last: dict[str, Any]) -> dict[str, Any]:
    """The "closed" event of an alert a previous run left open, made from that alert's last payload.

    The alert ended, as far as anyone can tell, when it was last updated.
    """
    payload = dict(last)
    seq = int(last["seq"]) + 1
    payload.update(
        event_id=event_id(str(last["alert_id"]), seq),
        seq=seq,
        event=AlertEventKind.CLOSED.value,
        close_reason=CloseReason.RESTART.value,
    )
    _times(payload, ended_at=last.get("updated_at"))
    return payload
