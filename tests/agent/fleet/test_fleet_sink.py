"""The fleet sink against a real hub and leaf: each event stored once at the hub, with its evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.alerts.config import RetryConfig
from agent.alerts.delivery import DeliveryWorker
from agent.alerts.outbox import Outbox
from agent.alerts.sinks import SinkError
from agent.fleet.hub import AlertIndex, FleetHub
from agent.fleet.runtime import FleetRuntime
from agent.fleet.subjects import ALERTS_STREAM
from tests.agent.alerts.helpers import wait_until
from tests.fixtures.nats_fleet import FleetNet


def _payload(
    site: str, alert_id: str, seq: int, camera: str = "cam1", evidence: bool = True
) -> dict[str, Any]:
    return {
        "schema": 1,
        "event_id": f"{alert_id}/{seq}",
        "alert_id": alert_id,
        "seq": seq,
        "event": "opened" if seq == 1 else "updated",
        "site": site,
        "camera": camera,
        "query_id": 1,
        "query": "a person falling down",
        "severity": "warning",
        "started_at": 1.0,
        "evidence": {
            "crop": f"{alert_id}/crop.jpg",
            "frame": f"{alert_id}/frame.jpg",
            "json": f"{alert_id}/evidence.json",
        }
        if evidence
        else None,
    }


def _evidence(folder: Path, alert_id: str) -> dict[str, bytes]:
    files = {
        "crop.jpg": b"\xff\xd8crop" * 1000,
        "frame.jpg": b"\xff\xd8frame" * 40000,
        "evidence.json": b'{"keypoints": []}',
    }
    (folder / alert_id).mkdir(parents=True)
    for name, data in files.items():
        (folder / alert_id / name).write_bytes(data)
    return files


def test_each_event_is_stored_once_at_the_hub_with_its_evidence(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    evidence_dir = tmp_path / "evidence"
    files = _evidence(evidence_dir, "alert-1")
    runtime = FleetRuntime(fleet_net.leaves["site-a"].agent_fleet_config(), "site-a", evidence_dir)
    sink = runtime.sink
    runtime.link.start()
    try:
        wait_until(lambda: runtime.provisioned, 10, "the site's streams")
        info = runtime.link.call(runtime.link.jetstream().stream_info(ALERTS_STREAM), 5)
        assert info.config.max_age == 30 * 86400  # fleet.retention_days at the leaf
        sink.send(_payload("site-a", "alert-1", 1))
        sink.send(_payload("site-a", "alert-1", 1))  # a resend after a lost ack
        sink.send(_payload("site-a", "alert-1", 2))
        assert sink.duplicates == 1
        index = AlertIndex()
        fleet_hub.follow_alerts(index)
        wait_until(lambda: len(index.events) == 2, 10, "two events at the hub")
        assert index.events == {"alert-1/1": 1, "alert-1/2": 1}
        latest = index.list(site="site-a")[0]
        assert latest["seq"] == 2
        bucket = latest["fleet_evidence"]["bucket"]
        wait_until(lambda: _readable(fleet_hub, bucket, "alert-1/frame.jpg"), 10, "the evidence mirror")
        for key, name in (("crop", "crop.jpg"), ("frame", "frame.jpg"), ("json", "evidence.json")):
            assert fleet_hub.evidence(bucket, latest["fleet_evidence"][key]) == files[name]
    finally:
        runtime.close()


def _readable(hub: FleetHub, bucket: str, name: str) -> bool:
    try:
        hub.evidence(bucket, name)
    except Exception:
        return False
    return True


def test_with_the_leaf_down_send_fails_and_the_outbox_keeps_the_event(
    fleet_net: FleetNet, tmp_path: Path
) -> None:
    leaf = fleet_net.leaves["site-b"]
    runtime = FleetRuntime(leaf.agent_fleet_config(ack_timeout_s=1.0), "site-b", tmp_path)
    leaf.server.stop()
    runtime.link.start()
    try:
        with pytest.raises(SinkError, match="not connected"):
            runtime.sink.send(_payload("site-b", "alert-2", 1, evidence=False))
    finally:
        runtime.close()


def test_a_site_cannot_speak_for_another_at_the_hub_index() -> None:
    index = AlertIndex()
    index.add("watchword.site-a.alerts.cam1", json.dumps(_payload("site-b", "x", 1)).encode())
    assert index.alerts == {}


def test_the_hub_index_follows_on_after_a_hub_restart_without_doubles(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    runtime = FleetRuntime(fleet_net.leaves["site-a"].agent_fleet_config(), "site-a", tmp_path)
    runtime.link.start()
    index = AlertIndex()
    fleet_hub.follow_alerts(index)
    try:
        wait_until(lambda: runtime.provisioned, 10, "the site's streams")
        runtime.sink.send(_payload("site-a", "before", 1, evidence=False))
        wait_until(lambda: "before/1" in index.events, 10, "the first event")
        fleet_net.hub.stop()
        runtime.sink.send(_payload("site-a", "during", 1, evidence=False))  # the leaf acknowledges it
        fleet_net.hub.start()
        fleet_net.wait_leaves()
        runtime.sink.send(_payload("site-a", "after", 1, evidence=False))
        wait_until(lambda: len(index.events) == 3, 30, "every event in the same index")
        assert index.events == {"before/1": 1, "during/1": 1, "after/1": 1}
    finally:
        runtime.close()


def test_a_batch_cut_by_killing_the_leaf_is_stored_once_after_its_restart(
    fleet_net: FleetNet, fleet_hub: FleetHub, tmp_path: Path
) -> None:
    """The real outbox and delivery thread, 32 events in flight; SIGKILL the leaf mid-delivery."""
    leaf = fleet_net.leaves["site-a"]
    config = leaf.agent_fleet_config(ack_timeout_s=1.0, publish_batch=32)
    runtime = FleetRuntime(config, "site-a", tmp_path)
    assert runtime.sink.batch_size == 32
    outbox = Outbox(tmp_path / "alerts.db")
    events = 600
    for i in range(events):
        event = {**_payload("site-a", f"k{i}", 1, evidence=False), "track_id": 1}
        outbox.enqueue(event, [runtime.sink.name], created_at=float(i))
    worker = DeliveryWorker(outbox, runtime.sink, RetryConfig(initial_s=0.05, max_s=0.5), idle_poll_s=0.05)
    index = AlertIndex()
    fleet_hub.follow_alerts(index)
    runtime.link.start()
    try:
        wait_until(lambda: runtime.provisioned, 10, "the site's streams")
        worker.start()
        wait_until(lambda: worker.counters.delivered >= 64, 30, "delivery under way")
        leaf.server.kill()
        left = outbox.backlog([runtime.sink.name])[runtime.sink.name]
        assert 0 < left < events  # killed mid-delivery
        leaf.server.start()
        fleet_net.wait_leaves()
        wait_until(
            lambda: outbox.backlog([runtime.sink.name])[runtime.sink.name] == 0, 60, "the backlog sent"
        )
        wait_until(lambda: len(index.events) >= events, 30, "every event at the hub")
        assert index.events == {f"k{i}/1": 1 for i in range(events)}  # none lost, none twice
        assert worker.counters.failed_attempts > 0  # the kill was felt
    finally:
        worker.stop(2)
        runtime.close()
        outbox.close()
