"""Run the whole agent (detection to alerts, sinks off) over a recorded video and collect its alerts."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.alerts.outbox import Outbox
from agent.config import AgentConfig
from agent.evaluation.replay_frames import Footage, ReplayedAlert, ReplayResult, media_time_of, read_records
from agent.service import Agent

log = logging.getLogger(__name__)


def replay_video(config: AgentConfig, frames_out: Path) -> ReplayResult:
    """Run ``config`` (one file camera, sinks off, state in a scratch folder) to the end of the video.

    The frame records go to ``frames_out`` (a later ``--frames`` replay reads them); the alerts are
    read back from the scratch outbox, each at its open time in media seconds.
    """
    agent = Agent(config, jsonl_path=frames_out)
    summary = agent.run()
    decided = agent.decisions.stats() if agent.decisions is not None else None
    windows = 0 if decided is None else decided.windows
    candidates = 0 if decided is None else decided.candidates
    outbox = Outbox(config.alerts.database)
    try:
        alerts = []
        for latest in outbox.recent(limit=1_000_000):
            opened = outbox.events(str(latest["alert_id"]))[0]
            media = opened.get("media") or {}
            alerts.append(
                ReplayedAlert(
                    camera=str(opened["camera"]),
                    query_id=int(opened["query_id"]),
                    track_id=int(opened["track_id"]),
                    time_s=float(media.get("started_s", opened["started_at"])),
                    severity=str(opened["severity"]),
                    score=float(
                        opened["fused_score"] if opened["fused_score"] is not None else opened["score"]
                    ),
                    verified=opened.get("verified"),
                )
            )
    finally:
        outbox.close()
    footage = Footage()
    for record in read_records(frames_out):
        footage.add(str(record["camera"]), media_time_of(record))
    alerts.sort(key=lambda a: (a.time_s, a.camera, a.query_id, a.track_id))
    return ReplayResult(alerts, footage, summary.frames, windows, candidates)
