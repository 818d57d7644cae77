"""The whole agent on the sample video with a CLIP export (the tiny random one, exported in the test):
a query added through the API while it runs is scored by the first batch after the registry check
that sees it, and alerts reach JSONL, webhook and MQTT receivers with their evidence."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import pytest

from agent.config import parse_config
from agent.service import Agent, StartupError
from agent.types import FrameResult
from tests.agent.alerts.helpers import WEBHOOK_SECRET, Mosquitto, MqttSubscriber, WebhookReceiver, wait_until

TOKEN = "end-to-end-token-0123456789"


class ScoreRecorder:
    """An analyser placed after the matcher: when each batch's scores were ready (UNIX seconds),
    with the scores of each of the batch's frames."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[dict[str, dict[str, float]]]]] = []

    def process(self, results: list[FrameResult]) -> None:
        self.batches.append((time.time(), [result.extra.get("scores", {}) for result in results]))


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


@pytest.mark.slow
def test_live_queries_scores_and_alerts(
    tmp_path: Path,
    clip_fp32: Path,
    sample_video: Path,
    mosquitto: Mosquitto,
    mqtt_subscriber: MqttSubscriber,
    webhook_receiver: WebhookReceiver,
) -> None:
    alerts_jsonl = tmp_path / "alerts.jsonl"
    config = parse_config(
        f"""
site: e2e
state_dir: {tmp_path}/state
database: {tmp_path}/queries.db
cameras:
  - {{id: sample, uri: "{sample_video}", loop: true, analysis_fps: 5}}
detector: {{type: ssd-mobilenet, batch_size: 4}}
matching:
  embedder:
    model_dir: "{clip_fp32}"
    engine: {{type: onnxruntime, providers: [cpu]}}
  window_s: 1
  embed_interval_s: 0.5
alerts:
  database: {tmp_path}/alerts.db
  evidence_dir: {tmp_path}/evidence
  cooldown_s: 3
  sinks:
    - {{type: jsonl, path: "{alerts_jsonl}"}}
    - {{type: webhook, url: "{webhook_receiver.url}", secret: {WEBHOOK_SECRET}}}
    - {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}}}
api: {{enabled: true, port: 0, token: {TOKEN}}}
"""
    )
    frames = tmp_path / "frames.jsonl"
    agent = Agent(config, jsonl_path=frames, duration_s=120)
    # A query every track matches (threshold near 0), so that alerts are raised.
    everyone = agent.registry.add("a person", threshold=0.01, severity="critical")
    assert agent.encoder is not None
    manifest_hash = agent.encoder.manifest_hash
    recorder = ScoreRecorder()
    agent.pipeline.analyzers.append(recorder)  # after the matcher: sees each batch's scores
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: agent.api is not None and len(_records(frames)) >= 5, 60, "frames and the API")
        assert agent.api is not None
        added_at = time.time()
        added = _post(f"{agent.api.url}/queries", {"text": "a person falling down"})

        def scored_at() -> float | None:
            """When the agent first put out a frame scoring the new query (as an operator sees it)."""
            for emitted, frames_scores in list(recorder.batches):
                for scores in frames_scores:
                    if any(str(added["id"]) in per_query for per_query in scores.values()):
                        return emitted
            return None

        wait_until(lambda: scored_at() is not None, 10, "a score for the new query")
        first_scored = scored_at()
        assert first_scored is not None
        # Counted in batches, not asserted on the wall clock (2 shared cores): the registry is checked
        # at the start of a batch at most every refresh_s, so of the batches finished after
        # added_at + refresh_s only the one already running then may lack the new query's scores.
        due = added_at + agent.config.matching.refresh_s
        unscored_after_due = [t for t, _ in list(recorder.batches) if due < t < first_scored]
        assert len(unscored_after_due) <= 1, (first_scored - added_at, len(unscored_after_due))

        # every track in a frame has a score for every query
        wait_until(lambda: any(r["wall_time"] > added_at + 1.5 for r in _records(frames)), 20, "more frames")
        late = [r for r in _records(frames) if r["wall_time"] > added_at + 1.5 and r["tracks"]]
        assert late
        for record in late:
            for track in record["tracks"]:
                assert set(record["scores"][str(track["id"])]) == {str(everyone.id), str(added["id"])}

        wait_until(lambda: len(webhook_receiver.event_ids()) >= 2, 60, "alerts at the webhook")
        wait_until(lambda: len(mqtt_subscriber.event_ids()) >= 2, 30, "alerts over MQTT")
    finally:
        agent.stop()
        runner.join(15)
    assert not runner.is_alive()

    sent = [json.loads(line) for line in alerts_jsonl.read_text().splitlines()]
    ids = {event["event_id"] for event in sent}
    assert set(webhook_receiver.event_ids()) == ids
    assert set(mqtt_subscriber.event_ids()) == ids
    opened = [event for event in sent if event["event"] == "opened"]
    assert opened and all(event["query_id"] == everyone.id for event in opened)
    assert all(m.topic == "watchword/e2e/alerts/sample" for m in mqtt_subscriber.messages)
    for event in opened:
        bundle = tmp_path / "evidence" / event["alert_id"]
        for name in ("crop.jpg", "frame.jpg"):
            image = cv2.imread(str(bundle / name))
            assert image is not None and image.size > 0, f"{name} of {event['alert_id']}"
        evidence = json.loads((bundle / "evidence.json").read_text())
        assert evidence["alert"]["alert_id"] == event["alert_id"]
        assert evidence["model_versions"] == {"clip": manifest_hash, "detector": "ssd-mobilenet"}
        assert evidence["score_history"], "the score history of the pair is in the evidence"


@pytest.mark.slow
def test_live_candidates_are_reranked_under_budget_with_rationale(
    tmp_path: Path, clip_fp32: Path, sample_video: Path, tiny_qwen2vl: Path
) -> None:
    """The live path through a real (tiny, random) Qwen2-VL in process: answers are mostly noise, so
    the accept threshold is 0, unverified warnings raise, and the test checks the plumbing, the
    budget (two requests a candidate) and the rationale."""
    alerts_jsonl = tmp_path / "alerts.jsonl"
    config = parse_config(
        f"""
site: e2e
state_dir: {tmp_path}/state
database: {tmp_path}/queries.db
cameras:
  - {{id: sample, uri: "{sample_video}", loop: true, analysis_fps: 5}}
detector: {{type: ssd-mobilenet, batch_size: 4}}
matching:
  embedder: {{model_dir: "{clip_fp32}", engine: {{type: onnxruntime, providers: [cpu]}}}}
  window_s: 1
rerank:
  enabled: true
  backend: {{type: transformers, model: "{tiny_qwen2vl}", device: cpu, max_new_tokens: 24}}
  calls_per_minute: 6
  accept_threshold: 0.0
alerts:
  database: {tmp_path}/alerts.db
  evidence_dir: {tmp_path}/evidence
  cooldown_s: 0
  unverified: {{warning: raise}}
  sinks: [{{type: jsonl, path: "{alerts_jsonl}"}}]
"""
    )
    agent = Agent(config, duration_s=60)
    agent.registry.add("a man in a red jacket falling off his bicycle", threshold=0.01)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(
            lambda: agent.rerank is not None and agent.rerank.stats().completed >= 2,
            50,
            "two re-ranked candidates",
        )
        assert agent.rerank is not None
        stats = agent.rerank.stats()
        assert agent.decisions is not None
        offered = agent.decisions.stats().queue.put
    finally:
        agent.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert stats.calls <= 6 + 1, "at most calls_per_minute requests in the first minute"
    assert offered > stats.completed + stats.failed, "more candidates than the budget allows were offered"
    opened = [
        e
        for e in (json.loads(line) for line in alerts_jsonl.read_text().splitlines())
        if e["event"] == "opened"
    ]
    assert opened
    # candidates the budget could not take are handed on unverified (and raise: policy above)
    asked = [e for e in opened if e["verification_reason"] not in ("budget", "deadline")]
    for event in opened:
        if event not in asked:
            assert event["fused_score"] is None and event["verification"] == "unverified"
            assert event["rationale"]["error"].startswith("not sent to the LMM")
    assert asked, "at least one alert went through the LMM"
    for event in asked:
        assert event["fused_score"] is not None
        # noise is never support: unverified (no_answer) at the coarse score, unless a yes was read
        if event["verification"] == "unverified":
            assert event["verification_reason"] == "no_answer" and event["verified"] is None
            assert event["fused_score"] == pytest.approx(event["score"], abs=1e-3)
        else:
            assert event["verification"] == "verified" and event["verified"] is True
        rationale = event["rationale"]
        masked = " ".join(blank["masked"] for blank in rationale["blanks"])
        assert "red" in masked and "jacket" in masked and "falling" in masked, rationale
        evidence = json.loads((tmp_path / "evidence" / event["alert_id"] / "evidence.json").read_text())
        # the record follows the alert's latest event (a later update, not re-ranked, has none)
        if evidence["alert"]["seq"] == event["seq"]:
            assert evidence["rationale"] == rationale


def _get(url: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:  # /health answers 503 when degraded, with its body
        return error.code, error.read()


def test_without_clip_tracking_runs_and_health_and_metrics_report(
    tmp_path: Path, sample_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a file no decoder reads: that camera fails at run time (a missing file is refused at load)
    (tmp_path / "broken.avi").write_bytes(b"not a video" * 100)
    config = parse_config(
        f"""
state_dir: {tmp_path}/state
database: {tmp_path}/queries.db
cameras:
  - {{id: sample, uri: "{sample_video}", loop: true}}
  - {{id: gone, uri: "{tmp_path}/broken.avi"}}
alerts: {{database: {tmp_path}/alerts.db, evidence_dir: {tmp_path}/evidence}}
api: {{enabled: true, port: 0, token: {TOKEN}}}
"""
    )
    with caplog.at_level("WARNING", logger="agent.service"):
        agent = Agent(config, duration_s=60)
    hints = [r for r in caplog.records if "standing queries are not evaluated" in r.getMessage()]
    assert len(hints) == 1 and "watchword export clip" in hints[0].getMessage()
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(
            lambda: agent.api is not None and agent.pipeline.counters["sample"].frames >= 10, 60, "frames"
        )
        assert agent.api is not None
        url = agent.api.url
        status, body = _get(f"{url}/health", token=None)
        health = json.loads(body)
        assert status == 503 and health["status"] == "degraded" and health["queries_evaluated"] is False
        assert health["cameras"]["sample"]["state"] == "running"
        assert health["cameras"]["sample"]["frames"] >= 10
        assert (
            health["cameras"]["gone"]["state"] == "failed"
            and "broken.avi" in health["cameras"]["gone"]["error"]
        )
        status, body = _get(f"{url}/metrics")
        text = body.decode()
        assert status == 200
        for name in (
            "watchword_frames_total",
            "watchword_detections_total",
            "watchword_frame_drops_total",
            "watchword_stage_seconds_total",
            "watchword_sink_backlog",
            "watchword_queries_enabled",
        ):
            assert f"# TYPE {name} " in text, name
        assert 'watchword_frames_total{camera="sample"}' in text
    finally:
        agent.stop()
        runner.join(15)
    assert not runner.is_alive()


def test_an_lmm_that_cannot_load_stops_the_start_with_its_key(tmp_path: Path, sample_video: Path) -> None:
    (tmp_path / "not-a-model").mkdir()  # exists (the config checks that), holds no model
    config = parse_config(
        f"""
state_dir: {tmp_path}/state
database: {tmp_path}/queries.db
cameras: [{{id: sample, uri: "{sample_video}"}}]
rerank:
  enabled: true
  backend: {{type: transformers, model: "{tmp_path}/not-a-model", device: cpu}}
alerts: {{database: {tmp_path}/alerts.db, evidence_dir: {tmp_path}/evidence}}
"""
    )
    agent = Agent(config, duration_s=10)
    with pytest.raises(StartupError, match=r"rerank\.backend: .*not-a-model"):
        agent.run()
