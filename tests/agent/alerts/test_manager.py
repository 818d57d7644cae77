"""The alert manager end to end: candidates in; MQTT, webhook and JSONL receivers get every alert once."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from agent.alerts.sinks.mqtt import MqttSink
from agent.types import TrackEvent, TrackEventKind
from tests.agent.alerts.deciding import DecidingManager

from .helpers import Mosquitto, MqttSubscriber, WebhookReceiver, alerts_config, make_candidate, wait_until


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _removed(camera: str, track: int, last_seen: float) -> TrackEvent:
    return TrackEvent(TrackEventKind.REMOVED, camera, track, 0, last_seen - 10, last_seen, 10)


def test_every_alert_reaches_mqtt_webhook_and_jsonl_once(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber, webhook_receiver: WebhookReceiver
) -> None:
    config = alerts_config(
        tmp_path,
        webhook_url=webhook_receiver.url,
        mqtt_port=mosquitto.port,
        jsonl=True,
        update_interval_s=5.0,
    )
    clock = FakeClock(1000.0)
    with DecidingManager(config, site="lab", clock=clock) as manager:
        events = [
            manager.submit(make_candidate(camera="dock-1", track=1, t=1000.0)),
            manager.submit(make_candidate(camera="dock-1", track=1, t=1002.0)),  # within the update interval
            manager.submit(make_candidate(camera="dock-1", track=1, t=1006.0)),
            manager.submit(
                make_candidate(camera="dock-1", track=1, t=1007.0, verified=True, fused_score=0.9)
            ),
            manager.submit(make_candidate(camera="gate", track=5, t=1008.0)),
        ]
        events += manager.on_track_event(_removed("dock-1", 1, last_seen=1009.0))
        events += manager.on_track_event(TrackEvent(TrackEventKind.LOST, "gate", 5, 0, 1000.0, 1008.0, 5))
        clock.now = 1008.0 + config.episode_quiet_s
        events += manager.tick_episodes()
        expected = [f"{e.alert_id}/{e.seq}" for e in events if e is not None]
        assert [e.kind.value if e else None for e in events] == [
            "opened", None, "updated", "updated", "opened", "closed", "closed",
        ]  # fmt: skip
        wait_until(lambda: set(webhook_receiver.event_ids()) == set(expected), 10, "webhook deliveries")
        wait_until(lambda: set(mqtt_subscriber.event_ids()) == set(expected), 10, "MQTT deliveries")
        wait_until(lambda: manager.backlog() == {"jsonl": 0, "webhook": 0, "mqtt": 0}, 10, "an empty backlog")
        wait_until(lambda: manager.stats().sinks["webhook"].delivered == len(expected), 5, "delivery counts")
        stats = manager.stats()
        recent = manager.recent()
    # The outbox drained and the manager closed: no sink sends again, the webhook answered every
    # request it recorded, and the fence is past whatever the broker took before it.
    mqtt_subscriber.fence()
    assert sorted(webhook_receiver.event_ids()) == sorted(expected)
    assert sorted(mqtt_subscriber.event_ids()) == sorted(expected)
    jsonl = [json.loads(line)["event_id"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert jsonl == expected  # one sink delivers in outbox order
    assert all(r.signature_ok for r in webhook_receiver.requests)
    topics = {m.payload["event_id"]: m.topic for m in mqtt_subscriber.messages}
    assert topics[expected[0]] == "watchword/lab/alerts/dock-1"
    assert topics[expected[3]] == "watchword/lab/alerts/gate"

    by_id = {r.payload["event_id"]: r.payload for r in webhook_receiver.accepted()}
    first, verified, closed = by_id[expected[0]], by_id[expected[2]], by_id[expected[4]]
    assert first["event"] == "opened" and first["site"] == "lab" and first["query"] == "query 7"
    assert first["started_at"] == 1000.0 and first["started_at_iso"] == "1970-01-01T00:16:40.000+00:00"
    assert first["box"] == [40.0, 30.0, 120.0, 190.0] and first["severity"] == "critical"
    assert first["model_versions"] == {"clip": "clip-test@1", "detector": "ssd@1"}
    assert verified["verified"] is True and verified["fused_score"] == 0.9 and verified["seq"] == 2
    assert closed["close_reason"] == "track_ended" and closed["ended_at"] == 1009.0
    assert by_id[expected[5]]["close_reason"] == "quiet" and by_id[expected[5]]["ended_at"] == 1008.0

    assert (stats.episodes.opened, stats.episodes.updated, stats.episodes.closed) == (2, 2, 2)
    assert stats.sinks["webhook"].delivered == len(expected)
    assert [(a["camera"], a["event"]) for a in recent] == [("gate", "closed"), ("dock-1", "closed")]


def test_broker_outage_piles_up_in_the_outbox_then_each_is_delivered_once(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: MqttSubscriber
) -> None:
    config = alerts_config(tmp_path, mqtt_port=mosquitto.port)
    with DecidingManager(config, site="lab") as manager:
        sink = manager.workers[0].sink
        assert isinstance(sink, MqttSink)
        now = time.time()
        first = manager.submit(make_candidate(track=1, t=now))
        assert first is not None
        wait_until(lambda: mqtt_subscriber.event_ids() == [f"{first.alert_id}/0"], 10, "the first alert")

        mosquitto.stop()
        wait_until(lambda: not sink.connected, 10, "the sink to notice the broker is gone")
        during = [manager.submit(make_candidate(track=10 + i, t=now + 1 + i)) for i in range(5)]
        expected = [f"{e.alert_id}/0" for e in during if e is not None]
        assert len(expected) == 5
        wait_until(lambda: manager.stats().sinks["mqtt"].failed_attempts >= 2, 10, "failed attempts")
        assert manager.backlog() == {"mqtt": 5}
        assert len(mqtt_subscriber.messages) == 1

        mosquitto.start()
        wait_until(lambda: manager.backlog() == {"mqtt": 0}, 15, "the backlog to drain")
        wait_until(lambda: len(mqtt_subscriber.messages) >= 6, 10, "the queued alerts")
        mqtt_subscriber.fence()  # the outbox drained: a duplicate published before has arrived
        counts = Counter(mqtt_subscriber.event_ids())
        assert counts == Counter([f"{first.alert_id}/0", *expected])
        # Order is kept through the outage.
        assert mqtt_subscriber.event_ids()[1:] == expected


def test_webhook_errors_are_retried_until_acknowledged(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.fail_next = 3
    config = alerts_config(tmp_path, webhook_url=webhook_receiver.url)
    with DecidingManager(config, site="lab") as manager:
        now = time.time()
        events = [manager.submit(make_candidate(track=i, t=now)) for i in (1, 2)]
        expected = [f"{e.alert_id}/0" for e in events if e is not None]
        wait_until(lambda: webhook_receiver.event_ids() == expected, 10, "both alerts acknowledged")
        assert manager.stats().sinks["webhook"].failed_attempts == 3
    answered = [
        (r.payload["event_id"], r.status) for r in webhook_receiver.requests if r.payload["event"] == "opened"
    ]
    assert answered == [(expected[0], 500)] * 3 + [(expected[0], 200), (expected[1], 200)]


def test_pending_alerts_of_a_stopped_manager_are_sent_by_the_next(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.fail_next = 10**6
    config = alerts_config(tmp_path, webhook_url=webhook_receiver.url, drain_timeout_s=0.0)
    first = DecidingManager(config, site="lab")
    first.start()
    now = time.time()
    opened = first.submit(make_candidate(track=1, t=now))
    first.close()  # closes the episode; nothing was acknowledged
    assert opened is not None
    assert webhook_receiver.event_ids() == []

    webhook_receiver.fail_next = 0
    second = DecidingManager(config, site="lab")
    # read before start(): once its delivery thread runs, the backlog shrinks as events go out
    assert second.backlog()["webhook"] == 2
    with second:
        expected = [f"{opened.alert_id}/0", f"{opened.alert_id}/1"]
        wait_until(lambda: webhook_receiver.event_ids() == expected, 10, "the pending alerts")
        assert [e["event"] for e in second.get(opened.alert_id)] == ["opened", "closed"]


def test_evidence_files_match_the_alert(tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    config = alerts_config(
        tmp_path, webhook_url=webhook_receiver.url, crop_padding=0.0, update_interval_s=0.0
    )
    box = (100.0, 50.0, 164.0, 210.0)
    with DecidingManager(config, site="lab") as manager:
        now = time.time()
        opened = manager.submit(make_candidate(track=3, t=now, box=box, frame_index=42))
        rationale = {"answers": ["falling"], "agreement": 0.8}
        manager.submit(make_candidate(track=3, t=now + 1, box=box, verified=True, rationale=rationale))
        assert opened is not None
        wait_until(lambda: len(webhook_receiver.event_ids()) == 2, 10, "two events")
    payload = webhook_receiver.accepted()[0].payload
    assert payload["evidence"] == {
        "crop": f"{opened.alert_id}/crop.jpg",
        "frame": f"{opened.alert_id}/frame.jpg",
        "json": f"{opened.alert_id}/evidence.json",
    }
    root = config.evidence_dir

    def decode(relative: str) -> np.ndarray:
        image = cv2.imdecode(np.fromfile(root / relative, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, f"{relative} is not a valid JPEG"
        return image

    assert decode(payload["evidence"]["crop"]).shape == (160, 64, 3)  # the box is 64 x 160 pixels
    assert decode(payload["evidence"]["frame"]).shape == (240, 320, 3)
    record = json.loads((root / payload["evidence"]["json"]).read_text())
    # The record follows the alert to its last event (closed at shutdown), with the re-ranker's rationale.
    assert record["alert"]["alert_id"] == opened.alert_id and record["alert"]["event"] == "closed"
    assert record["alert"]["close_reason"] == "shutdown"
    assert record["rationale"] == rationale
    assert record["crop_size"] == [64, 160] and record["alert"]["box"] == list(box)
    assert record["model_versions"] == {"clip": "clip-test@1", "detector": "ssd@1"}
    assert [s for _, s in record["score_history"]] == [0.7, 0.8]
    assert payload["frame_index"] == 42


def test_the_payload_names_the_clip_ahead_when_clips_are_recorded(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    """With a clip recorder (the console's), each event's evidence names ``clip.webm`` and when it
    exists (``clip_after_s`` media seconds after the alert opened); the webhook gets it in the
    opening event already, before the clip is written."""
    config = alerts_config(tmp_path, webhook_url=webhook_receiver.url, update_interval_s=0.0)
    with DecidingManager(config, site="lab") as manager:
        manager.clip_after_s = config.clip.after_s
        opened = manager.submit(make_candidate(track=3, t=time.time()))
        assert opened is not None
        wait_until(lambda: len(webhook_receiver.event_ids()) >= 1, 10, "the opening event")
    payload = webhook_receiver.accepted()[0].payload
    assert payload["event"] == "opened"
    assert payload["evidence"]["clip"] == f"{opened.alert_id}/clip.webm"
    assert payload["evidence"]["clip_after_s"] == 4.0
    assert not (config.evidence_dir / opened.alert_id / "clip.webm").exists()  # named ahead
