"""Findings 4 and 5: a replay of a run's frame records gives that run's alerts, by construction,
even when a query was added and another edited while it ran.

On main the first sample of a query added or edited mid-run was pooled (on every track's latest
crop) but never written to the records, and the replay scored every column from the replay's
queries as if nothing had changed, so its alerts came at other times.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent
from agent.config import AgentConfig
from agent.decision.core import DecisionCore
from agent.embedding import ClipEncoder
from agent.evaluation.replay_frames import FrameReplay, opened_alerts
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.outputs.jsonl import frame_record
from agent.queries import QueryRegistry, QueryUpdate
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind

# thresholds at 0.01: the tiny CLIP has random weights, so every pair is active whatever it scores;
# what is compared is when each alert opens, which the first sample of an added query decides
RNG = np.random.default_rng(7)
IMAGES = [RNG.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(4)]
BOXES = [[10.0, 10.0, 60.0, 150.0], [100.0, 20.0, 150.0, 200.0]]


def _result(index: int, t: float, ids: list[int]) -> FrameResult:
    frame = Frame("cam", index, t, 1_800_000_000.0 + t, IMAGES[(index // 7) % len(IMAGES)])
    tracks = Detections(
        xyxy=np.array(BOXES[: len(ids)], np.float32).reshape(-1, 4),
        confidence=np.full(len(ids), 0.9, np.float32),
        class_id=np.zeros(len(ids), np.int64),
        tracker_id=np.array(ids, np.int64),
    )
    events = [TrackEvent(TrackEventKind.NEW, "cam", i, index, t, t, 1) for i in ids if index == 0]
    return FrameResult(frame, tracks, events)


def test_a_run_whose_queries_changed_replays_to_the_same_alerts(tmp_path: Path, clip_fp32: Path) -> None:
    registry = QueryRegistry(tmp_path / "q.db")
    edited = registry.add("a person walking a dog", threshold=0.01, cooldown_s=4.0)
    registry.add("a person carrying a box", threshold=0.01, cooldown_s=4.0)
    matching = MatchingConfig(window_s=1.0, embed_interval_s=2.0, refresh_s=0.01, pool_window_s=3.0)
    alerts = AlertsConfig(cooldown_s=4.0, episode_quiet_s=3.0)
    encoder = ClipEncoder.load(clip_fp32, providers=["cpu"])
    matcher = Matcher(matching, encoder, registry)
    live: list[AlertEvent] = []
    core = DecisionCore(matching, alerts, matcher.query, live.extend, model_versions=matcher.model_versions)
    lines: list[str] = []
    added = None
    for index in range(120):  # 12 s at 10 frames/s
        t = index / 10.0
        if index == 35:  # the operator adds a query and edits another, between two batches
            added = registry.add("someone sitting on a bench", threshold=0.01, cooldown_s=4.0)
            registry.update(edited.id, QueryUpdate(text="a person running with a dog"))
            assert matcher.refresh_queries(force=True)  # at once here; live within matching.refresh_s
        result = _result(index, t, [1, 2])
        matcher.process([result])
        core.process([result])
        record = frame_record(result.frame, result.tracks, result.events)
        record.update({k: v for k, v in result.extra.items() if not k.startswith("_")})
        lines.append(json.dumps(record))
    core.finish()
    assert added is not None and any(added.id == q.id for q in matcher.queries)
    assert any('"columns"' in line for line in lines[1:]), "the change is in the records"
    run_alerts = opened_alerts(live)
    assert {a.query_id for a in run_alerts} >= {edited.id, added.id}, run_alerts
    config = AgentConfig.model_validate(
        {
            "cameras": [{"id": "cam", "uri": "rtsp://127.0.0.1/cam"}],
            "matching": matching.model_dump(),
            "alerts": alerts.model_dump(),
        }
    )
    replay = FrameReplay(config, registry.list_queries(enabled_only=True))
    for line in lines:
        replay.feed_record(json.loads(line))
    assert replay.finish().alerts == run_alerts
    encoder.close()
    registry.close()
