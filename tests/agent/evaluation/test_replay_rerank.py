"""A frames replay with the re-ranker: the LMM sees the recorded frame read back by pts, and its call
budget counts media time, so the replay decides the same on every run however fast it goes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from frame_files import registry_with, write_frames

from agent.config import AgentConfig
from agent.decision.core import RunClock
from agent.evaluation.replay_frames import replay_frames
from agent.evaluation.replay_rerank import FramePixels
from agent.rerank.backends.base import LmmBackend, LmmRequest, LmmResponse
from agent.rerank.config import RerankConfig
from agent.rerank.service import RerankService

RED, BLUE = (0, 0, 255), (255, 0, 0)  # BGR


class ColourBackend(LmmBackend):
    """A stand-in LMM (no model can run here) that records the mean colour of each image it is shown."""

    name = "colour"

    def __init__(self) -> None:
        self.colours: list[str] = []

    def generate(self, requests: Sequence[LmmRequest]) -> list[LmmResponse]:
        self._gate(len(requests))  # the budget's tokens, as the real backends take them
        for request in requests:
            blue, _, red = request.images[0].reshape(-1, 3).mean(axis=0)
            self.colours.append("red" if red > 200 > blue else "blue" if blue > 200 > red else "other")
        return [LmmResponse('{"blanks": {}, "verdict": "yes"}') for _ in requests]


def _video(path: Path, seconds: int, fps: int = 10) -> Path:
    """640x480 MJPG: red for the first half, blue after."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), float(fps), (640, 480))
    for index in range(seconds * fps):
        writer.write(np.full((480, 640, 3), RED if index < seconds * fps // 2 else BLUE, np.uint8))
    writer.release()
    return path


def test_frames_replay_reranks_recorded_pixels_under_a_media_time_budget(tmp_path: Path) -> None:
    video = _video(tmp_path / "c1.avi", 120)
    registry, ids = registry_with(
        tmp_path / "q.db", *({"text": f"a person doing thing {i}", "threshold": 0.2} for i in range(4))
    )
    frames = write_frames(
        tmp_path / "f.jsonl", lambda track, q, t: 0.9, tracks=[1, 2, 3], query_ids=ids, seconds=120
    )
    config = AgentConfig.model_validate(
        {"cameras": [{"id": "c1", "uri": str(video)}], "alerts": {"cooldown_s": 3600}}
    )
    # two requests a candidate (cloze, then verdict): three candidates a media minute
    rerank = RerankConfig(calls_per_minute=6, burst=2, deadline_s=30.0, accept_threshold=0.0)
    queries = registry.list_queries(enabled_only=True)
    runs = []
    for _ in range(2):
        backend = ColourBackend()
        clock = RunClock()
        stage = RerankService(rerank, backend, clock=clock)
        pixels = FramePixels(config)
        result = replay_frames(frames, config, queries, stage, clock, pixels)
        pixels.close()
        runs.append((result.alerts, backend.colours))
    alerts, colours = runs[0]
    assert runs[0] == runs[1], "the same decisions on every run"
    # 12 (query, person) pairs want the LMM; 6 requests a media minute, however fast the replay runs
    assert 10 <= len(colours) <= 14 and len(colours) % 2 == 0
    asked = colours[::2]  # the image of each candidate's cloze turn
    # the crops are the recording's pixels at the candidates' times: red first, blue after 60 s
    assert asked[0] == "red" and asked[-1] == "blue" and "other" not in colours
    reranked = [a for a in alerts if a.verified is not None]
    assert [c == "red" for c in asked] == [a.time_s < 60 for a in reranked]
