"""Evidence retention: the byte cap holds at every write, and evidence of undelivered alerts stays."""

from __future__ import annotations

from pathlib import Path

from agent.types import TrackEvent, TrackEventKind
from tests.agent.alerts.deciding import DecidingManager
from tests.agent.alerts.helpers import WebhookReceiver, alerts_config, make_candidate, wait_until


def _raise_and_end(manager: DecidingManager, track: int) -> str:
    """One alert on ``track``, whose track then ends (the episode closes); return its id."""
    t = 1_000.0 + track
    event = manager.submit(make_candidate(track=track, query=track, t=t))
    assert event is not None
    manager.on_track_event(TrackEvent(TrackEventKind.REMOVED, "cam1", track, 0, t - 5, t + 1, 10))
    return event.alert_id


def _bundles(root: Path) -> dict[str, int]:
    return {d.name: sum(f.stat().st_size for f in d.iterdir()) for d in root.iterdir() if d.is_dir()}


def test_byte_cap_is_enforced_when_writing_and_undelivered_evidence_is_kept(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    # Size the cap from a real bundle: room for three.
    probe = DecidingManager(alerts_config(tmp_path / "probe"), "probe")
    probe.start()
    probe.submit(make_candidate(track=1, t=1_000.0))
    probe.close()
    bundle_bytes = max(_bundles(tmp_path / "probe" / "evidence").values())
    cap = 3 * bundle_bytes + bundle_bytes // 2

    config = alerts_config(
        tmp_path, webhook_url=webhook_receiver.url, retention_bytes=cap, prune_interval_s=3600.0
    )
    manager = DecidingManager(config, "retention")
    manager.start()
    evidence = config.evidence_dir
    try:
        # The receiver is down: nothing is delivered, so no bundle may go, even past the cap.
        webhook_receiver.fail_next = 10**6
        undelivered_ids = {_raise_and_end(manager, t) for t in range(1, 7)}
        assert set(_bundles(evidence)) == undelivered_ids
        assert sum(_bundles(evidence).values()) > cap

        # It comes back: every event is delivered, and the next write brings the folder under the cap.
        webhook_receiver.fail_next = 0
        wait_until(lambda: not any(manager.backlog().values()), 30, "delivery")
        for t in range(7, 17):
            _raise_and_end(manager, t)
            # After every write, whatever the prune interval: within the cap plus the new record file.
            assert sum(_bundles(evidence).values()) <= cap + 4096
            wait_until(lambda: not any(manager.backlog().values()), 30, "delivery")
        assert not (undelivered_ids & set(_bundles(evidence))), "old delivered bundles are pruned first"
    finally:
        manager.close()
