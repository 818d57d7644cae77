"""Episodes and cooldown on hand-made candidate sequences (pure logic, times given explicitly)."""

from __future__ import annotations

from agent.alerts.episodes import AlertEvent, AlertEventKind, CloseReason, EpisodeTracker

from .helpers import make_candidate


def _tracker(**kwargs: float | bool) -> EpisodeTracker:
    settings: dict[str, float | bool] = {"cooldown_s": 60.0, "quiet_s": 30.0, "update_interval_s": 10.0}
    settings.update(kwargs)
    return EpisodeTracker(**settings)  # type: ignore[arg-type]


def _kinds(events: list[AlertEvent | None]) -> list[str | None]:
    return [None if e is None else e.kind.value for e in events]


def test_first_candidate_opens_then_updates_are_rate_limited() -> None:
    tracker = _tracker()
    events = [tracker.accept(make_candidate(t=1000.0 + dt)) for dt in (0, 1, 5, 9.9, 10, 12, 21)]
    assert _kinds(events) == ["opened", None, None, None, "updated", None, "updated"]
    opened, updated, later = events[0], events[4], events[6]
    assert opened is not None and updated is not None and later is not None
    assert opened.alert_id == updated.alert_id == later.alert_id
    assert [opened.seq, updated.seq, later.seq] == [0, 1, 2]
    assert opened.episode.started_at == 1000.0
    assert later.episode.last_seen == 1021.0 and later.episode.candidates == 7
    assert opened.candidate is not None and opened.candidate.wall_time == 1000.0


def test_event_snapshots_do_not_change_afterwards() -> None:
    tracker = _tracker(update_interval_s=0.0)
    opened = tracker.accept(make_candidate(t=1000.0, score=0.6))
    tracker.accept(make_candidate(t=1001.0, score=0.9))
    assert opened is not None
    assert opened.seq == 0 and opened.episode.latest.score == 0.6 and opened.episode.peak_score == 0.6


def test_verdict_change_is_reported_at_once() -> None:
    tracker = _tracker()
    tracker.accept(make_candidate(t=1000.0))
    verified = tracker.accept(make_candidate(t=1001.0, verified=True, fused_score=0.95, rationale={"a": 1}))
    assert verified is not None and verified.kind is AlertEventKind.UPDATED
    assert verified.episode.latest.verified is True and verified.episode.latest.rationale == {"a": 1}
    assert verified.episode.peak_score == 0.95
    assert tracker.accept(make_candidate(t=1002.0, verified=True)) is None


def test_cooldown_per_camera_query_and_person_counts_from_the_last_open() -> None:
    tracker = _tracker(cooldown_s=60.0, quiet_s=5.0)
    assert _kinds([tracker.accept(make_candidate(track=1, t=1000.0))]) == ["opened"]
    tracker.tick(1010.0)  # person 1's episode closes (quiet)
    # Person 1 again on the same camera and query within the cooldown: suppressed.
    assert tracker.accept(make_candidate(track=1, t=1030.0)) is None
    # Another person, another query, another camera: each has its own cooldown.
    assert _kinds([tracker.accept(make_candidate(track=2, t=1030.0))]) == ["opened"]
    assert _kinds([tracker.accept(make_candidate(track=1, query=8, t=1030.0))]) == ["opened"]
    assert _kinds([tracker.accept(make_candidate(track=1, camera="cam2", t=1030.0))]) == ["opened"]
    assert tracker.accept(make_candidate(track=1, t=1059.9)) is None
    assert _kinds([tracker.accept(make_candidate(track=1, t=1060.0))]) == ["opened"]
    assert tracker.counters.suppressed_cooldown == 2
    assert tracker.counters.opened == 5


def test_a_query_cooldown_overrides_the_default() -> None:
    tracker = _tracker(cooldown_s=60.0, quiet_s=5.0)
    long = make_candidate(track=1, t=1000.0)
    long.cooldown_s = 3600.0
    assert _kinds([tracker.accept(long)]) == ["opened"]
    tracker.tick(1010.0)
    for t in (1061.0, 2000.0, 4599.0):
        again = make_candidate(track=1, t=t)
        again.cooldown_s = 3600.0
        assert tracker.accept(again) is None, f"in the query's 3600 s cooldown at {t}"
    short = make_candidate(track=1, query=8, t=1000.0)
    short.cooldown_s = 2.0
    assert _kinds([tracker.accept(short)]) == ["opened"]
    tracker.tick(1010.0)
    later = make_candidate(track=1, query=8, t=1010.0)
    later.cooldown_s = 2.0
    assert _kinds([tracker.accept(later)]) == ["opened"]


def test_media_time_decides_and_wall_time_travels_along() -> None:
    tracker = _tracker(cooldown_s=60.0, quiet_s=5.0)
    first = make_candidate(track=1, t=1_700_000_000.0)  # wall time of the analysis
    first.media_time = 12.0  # the video's pts
    opened = tracker.accept(first)
    assert opened is not None and opened.episode.started_at == 12.0
    assert opened.episode.started_wall == 1_700_000_000.0
    assert not tracker.tick(16.9, "cam1") and not tracker.tick(100.0, "other-camera")
    closed = tracker.tick(17.0, "cam1")
    assert _kinds(list(closed)) == ["closed"] and closed[0].episode.ended_at == 12.0
    soon = make_candidate(track=1, t=1_700_000_001.0)  # a second later in wall time, 50 s in media
    soon.media_time = 62.0
    assert tracker.accept(soon) is None, "the cooldown runs on media time"


def test_cooldown_also_applies_to_the_same_track_after_a_close() -> None:
    tracker = _tracker(cooldown_s=60.0, quiet_s=5.0)
    first = tracker.accept(make_candidate(t=1000.0))
    closed = tracker.tick(1010.0)
    assert _kinds(list(closed)) == ["closed"]
    assert tracker.accept(make_candidate(t=1020.0)) is None
    again = tracker.accept(make_candidate(t=1061.0))
    assert first is not None and again is not None and again.kind is AlertEventKind.OPENED
    assert again.alert_id != first.alert_id and again.seq == 0


def test_track_end_closes_all_episodes_of_that_track_only() -> None:
    tracker = _tracker(cooldown_s=0.0)
    tracker.accept(make_candidate(track=1, query=7, t=1000.0))
    tracker.accept(make_candidate(track=1, query=8, t=1000.0))
    other = tracker.accept(make_candidate(track=2, query=7, t=1001.0))
    elsewhere = tracker.accept(make_candidate(camera="cam2", track=1, t=1001.0))
    closed = tracker.track_ended("cam1", 1, now=1005.0)
    assert sorted(e.episode.query_id for e in closed) == [7, 8]
    assert all(e.kind is AlertEventKind.CLOSED and e.seq == 1 for e in closed)
    assert all(
        e.episode.close_reason is CloseReason.TRACK_ENDED and e.episode.ended_at == 1005.0 for e in closed
    )
    assert all(e.candidate is None for e in closed)
    open_ids = {e.alert_id for e in tracker.open_episodes}
    assert other is not None and elsewhere is not None
    assert open_ids == {other.alert_id, elsewhere.alert_id}
    assert tracker.track_ended("cam1", 1, now=1006.0) == []


def test_quiet_episode_closes_when_last_seen() -> None:
    tracker = _tracker(quiet_s=30.0)
    tracker.accept(make_candidate(t=1000.0))
    assert tracker.accept(make_candidate(t=1009.0)) is None  # within the update interval
    assert tracker.tick(1038.9) == []
    closed = tracker.tick(1039.0)
    assert len(closed) == 1
    assert closed[0].episode.close_reason is CloseReason.QUIET
    assert closed[0].episode.ended_at == 1009.0
    assert closed[0].seq == 1
    assert tracker.open_episodes == []


def test_update_after_close_opens_nothing_until_cooldown() -> None:
    tracker = _tracker(cooldown_s=60.0)
    tracker.accept(make_candidate(t=1000.0))
    tracker.track_ended("cam1", 1, now=1001.0)
    assert tracker.accept(make_candidate(t=1002.0)) is None


def test_rejected_and_unverified_candidates() -> None:
    tracker = _tracker(cooldown_s=0.0)
    assert tracker.accept(make_candidate(track=1, t=1000.0, verified=False)) is None
    assert tracker.counters.rejected_unverified == 1
    strict = _tracker(cooldown_s=0.0, require_verified=True)
    assert strict.accept(make_candidate(track=1, t=1000.0)) is None
    opened = strict.accept(make_candidate(track=1, t=1001.0, verified=True))
    assert opened is not None and opened.kind is AlertEventKind.OPENED
    # Once open, a later rejection is reported as an update (so receivers learn of it).
    rejected = strict.accept(make_candidate(track=1, t=1002.0, verified=False))
    assert rejected is not None and rejected.kind is AlertEventKind.UPDATED
    assert rejected.episode.latest.verified is False


def test_close_all_and_unique_ids() -> None:
    tracker = _tracker(cooldown_s=0.0)
    ids = set()
    for track in range(5):
        event = tracker.accept(make_candidate(track=track, t=1000.0 + track))
        assert event is not None
        ids.add(event.alert_id)
    assert len(ids) == 5
    closed = tracker.close_all()
    assert {e.alert_id for e in closed} == ids
    assert all(e.episode.close_reason is CloseReason.SHUTDOWN for e in closed)
    assert tracker.counters.closed == 5


def test_reset_forgets_episodes_and_cooldowns() -> None:
    tracker = _tracker()
    tracker.accept(make_candidate(t=1000.0))
    tracker.reset()
    assert tracker.open_episodes == [] and tracker.counters.opened == 0
    assert _kinds([tracker.accept(make_candidate(track=2, t=1001.0))]) == ["opened"]


def test_an_update_the_lmm_did_not_see_keeps_its_verdict() -> None:
    tracker = _tracker(update_interval_s=0.0)
    opened = tracker.accept(
        make_candidate(t=1000.0, verified=True, fused_score=0.8, rationale={"verdict": "yes"})
    )
    assert opened is not None
    update = tracker.accept(make_candidate(t=1002.0, score=0.7), opens=False)
    assert update is not None and update.kind is AlertEventKind.UPDATED
    latest = update.episode.latest
    assert (latest.verified, latest.fused_score, latest.rationale) == (True, 0.8, {"verdict": "yes"})
    assert latest.score == 0.7, "the coarse score is the new one"
