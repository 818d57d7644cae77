"""The person's posture as a sentence for the LMM's verdict turn (never for the cloze blanks)."""

from __future__ import annotations

from agent.types import Candidate

SHOWN_CUES = ("fall", "running", "still_long", "arms_raised", "ground_long")


def posture_context(candidate: Candidate) -> str | None:
    """What the pose stage measured of the candidate's person, worded for the verdict turn; None
    without pose evidence. It says that it is an automatic estimate, so the LMM weighs it as such."""
    pose = candidate.pose
    if not pose or not pose.get("values"):
        return None
    values = pose["values"]
    evidence = pose.get("evidence", {})
    parts = [f"posture {pose.get('posture') or 'unknown'}"]
    if "torso_angle_deg" in evidence:
        parts.append(f"torso {evidence['torso_angle_deg']:.0f} degrees from vertical")
    if evidence.get("speed_body_heights_per_s") is not None:  # None: not measured yet
        parts.append(f"moving {evidence['speed_body_heights_per_s']:.1f} body heights per second")
    notable = [
        f"{name.replace('_', ' ')} {values[name]:.2f}" for name in SHOWN_CUES if values.get(name, 0) >= 0.3
    ]
    if notable:
        parts.append("behaviour cues " + ", ".join(notable))
    return "An automatic pose estimate of the boxed person (it can be wrong): " + "; ".join(parts) + "."
