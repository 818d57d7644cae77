"""Disk full: alerts that cannot be stored are kept in memory and delivered once space returns.

Runs on a real 3 MB tmpfs mounted by the test (root), filled to ENOSPC with a plain file.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from agent.types import TrackEvent, TrackEventKind
from tests.agent.alerts.deciding import DecidingManager
from tests.agent.alerts.helpers import WebhookReceiver, alerts_config, make_candidate, wait_until
from tests.fixtures.small_fs import fill, small_tmpfs


def _removed(camera: str, track: int, last_seen: float) -> TrackEvent:
    return TrackEvent(TrackEventKind.REMOVED, camera, track, 0, last_seen - 10, last_seen, 10)


def _seqs_without_gaps(event_ids: list[str]) -> dict[str, list[int]]:
    by_alert: dict[str, list[int]] = defaultdict(list)
    for event_id in event_ids:
        alert_id, seq = event_id.rsplit("/", 1)
        by_alert[alert_id].append(int(seq))
    for alert_id, seqs in by_alert.items():
        assert sorted(set(seqs)) == list(range(max(seqs) + 1)), f"gap in {alert_id}: {sorted(seqs)}"
    return by_alert


def test_alerts_raised_while_the_disk_is_full_arrive_once_space_returns(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    with small_tmpfs(tmp_path / "small", "3m") as root:
        config = alerts_config(
            root, webhook_url=webhook_receiver.url, jsonl=True, update_interval_s=0.0, retention_bytes=None
        )
        manager = DecidingManager(config, "diskfull")
        manager.start()
        try:
            filler = root / "filler.bin"
            fill(filler)
            tracks = 40
            for track in range(1, tracks + 1):
                t = 1_000.0 + track
                manager.submit(make_candidate(camera=f"cam{track % 3}", track=track, query=track % 4, t=t))
                manager.submit(
                    make_candidate(camera=f"cam{track % 3}", track=track, query=track % 4, t=t + 0.5)
                )
                manager.on_track_event(_removed(f"cam{track % 3}", track, t + 1.0))
                manager.tick_episodes()
            stats = manager.stats()
            # Nothing was dropped: what could not be stored waits in memory, and the health says so.
            assert stats.storage.dropped == 0
            assert stats.storage.buffered > 0, "expected the full disk to refuse some events"
            assert manager.health()["status"] == "degraded"

            filler.unlink()
            wait_until(
                lambda: (manager.tick_episodes(), manager.stats().storage.buffered == 0)[1],
                30,
                "buffer flush",
            )
            expected = 3 * tracks  # opened, updated, closed per track
            wait_until(lambda: len(set(webhook_receiver.event_ids())) >= expected, 60, "webhook delivery")
            wait_until(lambda: not any(manager.backlog().values()), 60, "JSONL delivery")
            assert manager.health()["status"] == "ok"
        finally:
            manager.close()

        webhook_ids = webhook_receiver.event_ids()
        by_alert = _seqs_without_gaps(webhook_ids)
        assert len(by_alert) == tracks
        assert len(set(webhook_ids)) == 3 * tracks
        # A delivery that could not be recorded is not resent in a loop: each event is POSTed once.
        posts = Counter(r.payload["event_id"] for r in webhook_receiver.requests)
        assert max(posts.values()) == 1, posts.most_common(3)
        lines = (root / "alerts.jsonl").read_text().splitlines()
        jsonl_ids = [json.loads(line)["event_id"] for line in lines]
        _seqs_without_gaps(jsonl_ids)
        assert set(jsonl_ids) == set(webhook_ids)
