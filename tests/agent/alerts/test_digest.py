"""The run summary's alert lines count the alerts this run raised, not the whole history."""

from __future__ import annotations

from pathlib import Path

from agent.alerts.digest import alert_digest
from tests.agent.alerts.deciding import DecidingManager
from tests.agent.alerts.helpers import alerts_config, make_candidate


def test_the_run_summary_counts_this_runs_alerts_only(tmp_path: Path) -> None:
    config = alerts_config(tmp_path, jsonl=True, update_interval_s=0.0)
    earlier = DecidingManager(config, "site")
    earlier.start()
    for track in (1, 2, 3):
        earlier.submit(make_candidate(track=track, query=1, t=1_000.0 + track))
    earlier.close()
    crashed = DecidingManager(config, "site")  # left two alerts open: the next start closes them
    for track in (4, 5):
        crashed.submit(make_candidate(track=track, query=1, t=1_100.0 + track))
    assert len(crashed.recent(limit=100)) == 5
    crashed.outbox.close()

    manager = DecidingManager(config, "site")
    manager.start()
    try:
        assert manager.opened_this_run() == ([], None)
        assert alert_digest(*manager.opened_this_run(), config.evidence_dir, []) == ["alerts: none raised"]
        manager.submit(make_candidate(track=10, query=2, t=2_000.0))
        manager.submit(make_candidate(track=11, query=2, t=2_001.0))
        manager.submit(make_candidate(track=11, query=2, t=2_002.0))  # an update, the same alert
        manager.submit(make_candidate(track=12, query=3, t=2_003.0))
        opened, latest = manager.opened_this_run()
        lines = alert_digest(opened, latest, config.evidence_dir, [])
    finally:
        manager.close()
    assert opened == [(2, "query 2", 2), (3, "query 3", 1)]
    assert latest is not None and latest["track_id"] == 12
    assert lines[0] == (
        f"alerts: 3 raised (query 2 'query 2': 2; query 3 'query 3': 1); evidence in {config.evidence_dir}"
    )
    assert lines[1].startswith("latest: 'query 3' on track 12: ") and lines[1].endswith("frame.jpg")
