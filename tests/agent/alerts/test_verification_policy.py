"""Verified / rejected / unverified candidates and the per-severity policy for unverified ones.

The episode logic on hand-made candidates, and the payload as a JSONL sink writes it through the
real outbox (SQLite file) and delivery worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.alerts.config import AlertsConfig, UnverifiedPolicy
from agent.alerts.episodes import EpisodeTracker
from tests.agent.alerts.deciding import DecidingManager

from .helpers import alerts_config, make_candidate, wait_until


def _unverified(severity: str, reason: str = "no_answer", track: int = 1, t: float = 1000.0) -> object:
    return make_candidate(
        track=track, t=t, severity=severity, verification="unverified", verification_reason=reason
    )


@pytest.mark.parametrize(("severity", "opens"), [("critical", True), ("warning", False), ("info", False)])
def test_default_policy_raises_critical_and_holds_the_rest(severity: str, opens: bool) -> None:
    tracker = EpisodeTracker(cooldown_s=0.0, unverified_policy=AlertsConfig().unverified.action)
    event = tracker.accept(_unverified(severity, "budget"))  # type: ignore[arg-type]
    assert (event is not None) is opens
    assert tracker.counters.held_unverified == (0 if opens else 1)
    if event is not None:
        assert event.episode.latest.verification == "unverified"
        assert event.episode.latest.verification_reason == "budget"


def test_policy_is_configurable_and_rejected_never_opens() -> None:
    policy = UnverifiedPolicy(critical="hold", warning="raise")
    tracker = EpisodeTracker(cooldown_s=0.0, unverified_policy=policy.action)
    assert tracker.accept(_unverified("critical")) is None  # type: ignore[arg-type]
    assert tracker.accept(_unverified("warning", track=2)) is not None  # type: ignore[arg-type]
    rejected = make_candidate(track=3, verified=False, verification="rejected")
    assert tracker.accept(rejected) is None and tracker.counters.rejected_unverified == 1
    verified = make_candidate(track=4, severity="info", verified=True, verification="verified")
    assert tracker.accept(verified) is not None
    # require_verified concerns candidates that were never re-ranked; the policy decides the others
    strict = EpisodeTracker(cooldown_s=0.0, require_verified=True, unverified_policy=policy.action)
    assert strict.accept(make_candidate(track=1)) is None
    assert strict.accept(_unverified("warning", track=2)) is not None  # type: ignore[arg-type]


def test_a_held_candidate_opens_later_once_verified() -> None:
    tracker = EpisodeTracker(cooldown_s=0.0)
    assert tracker.accept(_unverified("warning", t=1000.0)) is None  # type: ignore[arg-type]
    later = make_candidate(t=1002.0, severity="warning", verified=True, verification="verified")
    opened = tracker.accept(later)
    assert opened is not None and opened.episode.latest.verification == "verified"
    # once open, an unverified candidate updates the episode and the change is reported at once
    again = tracker.accept(_unverified("warning", "deadline", t=1003.0))  # type: ignore[arg-type]
    assert again is not None and again.kind.value == "updated"


def test_payload_states_the_verification_and_its_reason(tmp_path: Path) -> None:
    config = alerts_config(tmp_path, jsonl=True)
    assert config.unverified.action("critical") == "raise"
    with DecidingManager(config, site="lab") as manager:
        manager.submit(_unverified("critical", "deadline", track=1))  # type: ignore[arg-type]
        manager.submit(_unverified("warning", "budget", track=2))  # type: ignore[arg-type]
        manager.submit(
            make_candidate(track=3, query=8, verified=True, verification="verified", fused_score=0.9)
        )
        manager.submit(make_candidate(track=4, query=9))  # not re-ranked
        wait_until(lambda: manager.backlog() == {"jsonl": 0}, 10, "the JSONL sink")
    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    by_track = {p["track_id"]: p for p in lines if p["event"] == "opened"}
    assert set(by_track) == {1, 3, 4}  # the warning one was held
    assert (by_track[1]["verification"], by_track[1]["verification_reason"], by_track[1]["verified"]) == (
        "unverified",
        "deadline",
        None,
    )
    assert (by_track[3]["verification"], by_track[3]["verified"]) == ("verified", True)
    assert by_track[3]["verification_reason"] is None
    assert by_track[4]["verification"] is None and by_track[4]["verified"] is None


def test_config_reads_the_policy_from_yaml_keys() -> None:
    config = AlertsConfig.model_validate({"unverified": {"critical": "hold", "info": "raise"}})
    assert [config.unverified.action(s) for s in ("critical", "warning", "info", "other")] == [
        "hold",
        "hold",
        "raise",
        "hold",
    ]
    with pytest.raises(ValueError, match="raise"):
        AlertsConfig.model_validate({"unverified": {"critical": "maybe"}})
