"""The one-line reason of an alert, from what was stored with it (found: a cue alert's page said
"not re-ranked" while its evidence said "still 6.5 s, speed 0.02 body heights/s")."""

from __future__ import annotations

from agent.console.reason import alert_reason


def test_a_cue_alert_says_the_measured_values() -> None:
    record = {
        "pose": {
            "cue": "still_long",
            "values": {"still_long": 0.93, "running": 0.0},
            "evidence": {"still_s": 6.5, "speed_body_heights_per_s": 0.02, "lying_s": 0.0},
            "posture": "upright",
        }
    }
    alert = {"peak_score": 0.93, "rationale": {}}
    assert alert_reason(alert, record, 0.6) == (
        "cue still_long 0.93: still 6.5 s, speed 0.02 body heights/s, posture upright"
    )


def test_an_lmm_verdict_comes_first_with_what_it_saw() -> None:
    rationale = {
        "verdict": "yes",
        "verdict_probability": 0.87,
        "blanks": [{"masked": "an object in the hand", "answer": "a crowbar"}],
    }
    record = {"pose": {"cue": "running", "values": {"running": 0.9}, "evidence": {}}}
    line = alert_reason({"rationale": rationale, "peak_score": 0.7}, record, 0.6)
    assert line == "LMM verdict yes (p 0.87); it saw an object in the hand -> a crowbar"


def test_otherwise_the_score_its_threshold_and_its_rank() -> None:
    record = {"score_history": [[1.0, 0.2], [1.5, 0.71], [2.0, 0.8], [2.5, 0.5]]}
    line = alert_reason({"peak_score": 0.71, "rationale": {}}, record, 0.6)
    assert line == "CLIP score 0.71 over threshold 0.60; rank 2 of 4 samples of this person"
    assert alert_reason({"score": 0.4}, None, None) == "CLIP score 0.40"


def test_a_zoned_cue_alert_says_how_long_in_the_zone() -> None:
    record = {
        "pose": {
            "cue": "still_long",
            "values": {"still_long": 0.93},
            "evidence": {"still_s": 30.0},
            "zone": {"zones": ["entrance"], "in_zone_s": 6.5},
        }
    }
    line = alert_reason({"peak_score": 0.91, "rationale": {}}, record, 0.6)
    assert line == "cue still_long 0.93: still 30.0 s, in zone entrance for 6.5 s"
