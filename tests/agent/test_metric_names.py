"""The names and labels ``/metrics`` serves stay what dashboards were built on: the agent on the sample
video (CLIP matcher, re-ranker, a JSONL sink, the API) is scraped over HTTP and every family, its
type and each sample's label set are compared with the lists below: those /metrics served before
the metrics moved into the components that own them (pinned then), and those added since."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path

from agent.config import parse_config
from agent.service import Agent
from tests.agent.alerts.helpers import wait_until

TOKEN = "metric-names-token-0123456789"

# Labels whose values are the agent's own vocabulary (pinned with their values); the others
# (camera, sink, method) name things of the config, so only the key is pinned.
ENUMERATED_LABELS = {"stage", "queue", "event", "reason", "kind"}

FAMILIES = {
    "watchword_frames_total": "counter",
    "watchword_frame_drops_total": "counter",
    "watchword_reconnects_total": "counter",
    "watchword_detections_total": "counter",
    "watchword_tracks_active": "gauge",
    "watchword_tracks_total": "counter",
    "watchword_last_frame_age_seconds": "gauge",
    "watchword_embeddings_total": "counter",
    "watchword_candidates_total": "counter",
    "watchword_candidates_dropped_total": "counter",
    "watchword_stage_seconds_total": "counter",
    "watchword_stage_calls_total": "counter",
    "watchword_alert_events_total": "counter",
    "watchword_alerts_suppressed_total": "counter",
    "watchword_sink_delivered_total": "counter",
    "watchword_sink_backlog": "gauge",
    "watchword_sink_dead_letters_total": "counter",
    "watchword_alert_events_held": "gauge",
    "watchword_alert_events_dropped_total": "counter",
    "watchword_alert_storage_errors_total": "counter",
    "watchword_queries_enabled": "gauge",
    "watchword_api_connections": "gauge",
    "watchword_api_connections_max": "gauge",
    "watchword_api_connections_closed_total": "counter",
    "watchword_api_auth_failures_total": "counter",
    "watchword_api_auth_lockouts_total": "counter",
    "watchword_api_auth_refused_total": "counter",
    "watchword_api_auth_clients_locked_out": "gauge",
}
# Added with the move: the search index and the storage report their own numbers too.
ADDED_FAMILIES = {
    "watchword_search_tracks": "gauge",
    "watchword_search_faults_total": "counter",
    "watchword_storage_free_bytes": "gauge",
}

SERIES = {
    "watchword_frames_total{camera}",
    "watchword_frame_drops_total{camera}",
    "watchword_reconnects_total{camera}",
    "watchword_detections_total{camera}",
    "watchword_tracks_active{camera}",
    "watchword_tracks_total{camera}",
    "watchword_last_frame_age_seconds{camera}",
    "watchword_embeddings_total{}",
    "watchword_candidates_total{}",
    "watchword_candidates_dropped_total{queue=candidates}",
    "watchword_candidates_dropped_total{queue=stale}",
    "watchword_stage_seconds_total{stage=detect}",
    "watchword_stage_seconds_total{stage=embed}",
    "watchword_stage_seconds_total{stage=rerank}",
    "watchword_stage_calls_total{stage=detect}",
    "watchword_stage_calls_total{stage=embed}",
    "watchword_stage_calls_total{stage=rerank}",
    "watchword_alert_events_total{event=opened}",
    "watchword_alert_events_total{event=updated}",
    "watchword_alert_events_total{event=closed}",
    "watchword_alerts_suppressed_total{reason=cooldown}",
    "watchword_alerts_suppressed_total{reason=late_update}",
    "watchword_alerts_suppressed_total{reason=not_verified}",
    "watchword_alerts_suppressed_total{reason=unverified_held}",
    "watchword_sink_delivered_total{sink}",
    "watchword_sink_backlog{sink}",
    "watchword_sink_dead_letters_total{sink}",
    "watchword_alert_events_held{}",
    "watchword_alert_events_dropped_total{}",
    "watchword_alert_storage_errors_total{kind=outbox}",
    "watchword_alert_storage_errors_total{kind=evidence}",
    "watchword_queries_enabled{}",
    "watchword_api_connections{}",
    "watchword_api_connections_max{}",
    "watchword_api_connections_closed_total{reason=request_timeout}",
    "watchword_api_connections_closed_total{reason=evicted}",
    "watchword_api_connections_closed_total{reason=refused}",
    "watchword_api_auth_failures_total{method}",
    "watchword_api_auth_lockouts_total{}",
    "watchword_api_auth_refused_total{}",
    "watchword_api_auth_clients_locked_out{}",
}
ADDED_SERIES = {
    "watchword_search_tracks{}",
    "watchword_search_faults_total{}",
    "watchword_storage_free_bytes{holds}",
    # the decision core: candidates a remembered LMM rejection kept from the LMM
    "watchword_alerts_suppressed_total{reason=rejected_remembered}",
}

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? \S+$")
_LABEL = re.compile(r'(?P<key>[a-z_]+)="(?P<value>(?:[^"\\]|\\.)*)"')


def _scrape(url: str) -> str:
    request = urllib.request.Request(f"{url}/metrics")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        text: str = response.read().decode()
        return text


def parse_exposition(text: str) -> tuple[dict[str, str], set[str], list[str]]:
    """(family -> type, series as ``name{label=value,key}``, families declared more than once)."""
    families: dict[str, str] = {}
    repeated: list[str] = []
    series: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            if name in families:
                repeated.append(name)
            families[name] = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, line
            labels = sorted(
                f"{m['key']}={m['value']}" if m["key"] in ENUMERATED_LABELS else m["key"]
                for m in _LABEL.finditer(match["labels"] or "")
            )
            series.add(f"{match['name']}{{{','.join(labels)}}}")
    return families, series, repeated


def test_metrics_keep_their_names_types_and_labels(
    tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> None:
    config = parse_config(
        f"""
state_dir: {tmp_path}/state
database: {tmp_path}/queries.db
cameras:
  - {{id: sample, uri: "{sample_video}", loop: true, analysis_fps: 5}}
matching:
  embedder:
    model_dir: "{clip_fp32}"
    engine: {{type: onnxruntime, providers: [cpu]}}
rerank:
  enabled: true
  backend: {{type: openai, base_url: "http://127.0.0.1:9/v1", model: m, max_retries: 0, timeout_s: 1}}
alerts:
  database: {tmp_path}/alerts.db
  evidence_dir: {tmp_path}/evidence
  sinks:
    - {{type: jsonl, path: "{tmp_path}/alerts.jsonl"}}
api: {{enabled: true, port: 0, token: {TOKEN}}}
"""
    )
    agent = Agent(config, duration_s=60)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_until(
            lambda: agent.api is not None and agent.pipeline.counters["sample"].frames >= 3, 60, "frames"
        )
        assert agent.api is not None
        families, series, repeated = parse_exposition(_scrape(agent.api.url))
    finally:
        agent.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert repeated == []  # one HELP/TYPE block per family, whichever components add samples to it
    assert families == FAMILIES | ADDED_FAMILIES
    assert series == SERIES | ADDED_SERIES
