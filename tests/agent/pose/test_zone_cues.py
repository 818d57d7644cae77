"""A zone-limited cue query, through the real pose chain (MoveNet export, cues, sentence mapping,
the cue matcher) with its zones read from a real camera store: sampled only while the person's feet
are in the zone, and ``still_long`` counts only the time since they are in it.

The person of the sample video stands still the whole time; the operator draws the zone away from
them first, then moves it under their feet at 5 s: the zoned query's stillness starts counting then,
while the same query without a zone has counted since the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.cameras.store import CameraStore
from agent.matching.config import MatchingConfig
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueMatcher
from agent.pose.estimator import PoseEstimator
from agent.pose.querycues import QueryCues
from agent.pose.sentence import SentenceEmbedder
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry
from agent.types import FrameResult
from agent.zones import ZoneBook
from tests.agent.pose.test_fall_alert import CANVAS, person_result, sequence

MOVE_AT_S = 5.0


def square(cx: float, cy: float, half: float) -> list[list[float]]:
    return [[cx - half, cy - half], [cx + half, cy - half], [cx + half, cy + half], [cx - half, cy + half]]


class Stage(Protocol):
    def process(self, results: list[FrameResult]) -> None: ...


def still_person_in_zone(
    frames: Sequence[tuple[float, np.ndarray, Any]],
    store: CameraStore,
    move_at_s: float,
    stages: Sequence[Stage],
    key: str,
) -> list[tuple[float, dict[str, float]]]:
    """Feed the still person of ``frames`` (track 7 of camera "cam") through ``stages`` frame by
    frame, moving camera "cam"'s zone "door" under their feet at media time ``move_at_s`` (as if
    they stepped in); each frame's ``extra[key]`` samples of the track, with the frame's time."""
    _, _, box = frames[0]
    feet = ((box[0] + box[2]) / 2 / CANVAS[1], box[3] / CANVAS[0])
    seen: list[tuple[float, dict[str, float]]] = []
    moved = False
    for index, (t, image, person) in enumerate(frames):
        if t >= move_at_s and not moved:
            store.update("cam", {"zones": [{"name": "door", "points": square(*feet, 0.1)}]})
            moved = True
        results = [person_result(index, t, image, person)]
        for stage in stages:
            stage.process(results)
        sample = results[0].extra.get(key, {}).get("7")
        if sample:
            seen.append((t, sample))
    return seen


def test_still_counts_only_inside_the_zone(
    tmp_path: Path, pose_config: PoseConfig, sentence_embedder: SentenceEmbedder
) -> None:
    registry = QueryRegistry(tmp_path / "queries.db")
    anywhere = registry.add("someone standing still for a long time").id
    zoned = registry.add("someone standing still for a long time", zones=["door"]).id
    frames = sequence(falls=False, seconds=12.0)
    store = CameraStore(tmp_path / "state.db")
    store.add(
        {"id": "cam", "uri": "test://ball", "zones": [{"name": "door", "points": square(0.1, 0.1, 0.05)}]}
    )
    still_2s = pose_config.cues.model_copy(update={"still_long_s": 2.0})  # 0.5 at 2 s still
    config = pose_config.model_copy(update={"interval_s": 0.5, "score_interval_s": 0.5, "cues": still_2s})
    pose = PoseAnalyzer(config, PoseEstimator(config))
    cues = QueryCues(registry, CueVocabulary({"minilm": sentence_embedder.embed}))
    matcher = CueMatcher(
        MatchingConfig(window_s=1.0),
        config,
        pose,
        cues,
        zones=ZoneBook(store.list_cameras, store.revision, 0.0),
    )
    assert {q.id for q in matcher.queries} == {anywhere, zoned}, "both map to still_long"
    seen = still_person_in_zone(frames, store, MOVE_AT_S, [pose, matcher], "cue_samples")
    before = [s for t, s in seen if t < MOVE_AT_S]
    after = [(t, s) for t, s in seen if t >= MOVE_AT_S]
    assert before and all(str(zoned) not in s for s in before), "outside the zone: not sampled"
    assert after and all(str(zoned) in s for _, s in after), "inside: sampled"
    first = after[0][1]
    assert first[str(anywhere)] > 0.9, "still for over 5 s anywhere"
    assert first[str(zoned)] < 0.1, "still for under a second in the zone"
    late = [s for t, s in after if t >= MOVE_AT_S + 6.0]
    assert late and late[-1][str(zoned)] > 0.5, "and it counts up while they stay"
    query = registry.get(zoned)
    evidence = matcher.evidence("cam", 7, query, frames[-1][0])
    assert evidence is not None and evidence["zone"]["zones"] == ["door"]
    assert 6.0 < evidence["zone"]["in_zone_s"] <= frames[-1][0] - MOVE_AT_S
    store.close()
    registry.close()
