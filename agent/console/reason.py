"""One line saying why an alert fired, built only from what was stored with it.

In order of what explains best: the LMM's verdict and its rationale when the alert was re-ranked; the
behaviour cue's measured values when a pose cue scored the query (``still 6.5 s, speed 0.02 body
heights/s``); otherwise the coarse CLIP score against the threshold, and its rank among the
candidates of the episode.
"""

from __future__ import annotations

from typing import Any

# the measured values that explain each cue, as (evidence key, words, unit, digits)
_CUE_EVIDENCE: dict[str, tuple[tuple[str, str, str, int], ...]] = {
    "still_long": (
        ("still_s", "still", " s", 1),
        ("speed_body_heights_per_s", "speed", " body heights/s", 2),
    ),
    "running": (("speed_body_heights_per_s", "speed", " body heights/s", 2),),
    "fall": (
        ("hip_drop_body_heights_per_s", "hip drop", " body heights/s", 2),
        ("lying_s", "lying", " s", 1),
    ),
    "ground_long": (("lying_s", "on the ground", " s", 1),),
    "arms_raised": (("wrist_above_shoulder", "wrist above shoulder by", " body heights", 2),),
    "lying": (("torso_angle_deg", "torso", " degrees from vertical", 0),),
    "crouching": (("leg_ratio", "leg ratio", "", 2),),
    "upright": (("torso_angle_deg", "torso", " degrees from vertical", 0),),
}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _cue_reason(pose: dict[str, Any]) -> str | None:
    cue = pose.get("cue")
    if not isinstance(cue, str):
        return None
    values = pose.get("values") or {}
    evidence = pose.get("evidence") or {}
    parts: list[str] = []
    for key, words, unit, digits in _CUE_EVIDENCE.get(cue, ()):
        number = _number(evidence.get(key))
        if number is not None:
            parts.append(f"{words} {number:.{digits}f}{unit}")
    if pose.get("posture"):
        parts.append(f"posture {pose['posture']}")
    zone = pose.get("zone")
    if isinstance(zone, dict) and _number(zone.get("in_zone_s")) is not None:
        names = ", ".join(str(z) for z in zone.get("zones") or [])
        parts.append(f"in zone {names} for {float(zone['in_zone_s']):.1f} s")
    value = _number(values.get(cue))
    head = f"cue {cue}" + (f" {value:.2f}" if value is not None else "")
    return head + (": " + ", ".join(parts) if parts else "")


def _lmm_reason(rationale: dict[str, Any]) -> str | None:
    verdict = rationale.get("verdict")
    if verdict is None:
        return None
    line = f"LMM verdict {verdict}"
    probability = _number(rationale.get("verdict_probability"))
    if probability is not None:
        line += f" (p {probability:.2f})"
    answers = [
        f"{blank.get('masked')} -> {blank.get('answer')}"
        for blank in rationale.get("blanks") or []
        if isinstance(blank, dict) and blank.get("masked")
    ]
    if answers:
        line += "; it saw " + ", ".join(answers)[:200]
    return line


def alert_reason(alert: dict[str, Any], record: dict[str, Any] | None, threshold: float | None) -> str:
    """Why ``alert`` (its latest payload) fired, from its evidence ``record`` (evidence.json, or None)
    and the query's effective ``threshold`` (None when unknown)."""
    record = record or {}
    rationale = alert.get("rationale") or record.get("rationale") or {}
    if isinstance(rationale, dict):
        lmm = _lmm_reason(rationale)
        if lmm is not None:
            return lmm
    pose = record.get("pose")
    if isinstance(pose, dict):
        cue = _cue_reason(pose)
        if cue is not None:
            return cue
    score = _number(alert.get("peak_score")) or _number(alert.get("score")) or 0.0
    line = f"CLIP score {score:.2f}"
    if threshold is not None:
        line += f" over threshold {threshold:.2f}"
    candidates = alert.get("candidates")
    history = [s for _, s in record.get("score_history") or [] if _number(s) is not None]
    if history:
        rank = 1 + sum(1 for s in history if s > score)
        line += f"; rank {rank} of {len(history)} samples of this person"
    elif isinstance(candidates, int) and candidates > 1:
        line += f"; {candidates} candidates in the episode"
    return line
