"""CLIP and pose both on: a zone-limited query's blended stillness counts only time in its zone.

Real parts throughout: the tiny CLIP export, MoveNet (exported ONNX), the cues, the sentence
mapping, :class:`CueFusion` in the CLIP matcher, the decision core, SQLite registry and camera store.
The person of the sample video stands still the whole time. The operator's zone is away from them
at first and is moved under their feet at :data:`MOVE_AT_S`, as if they stepped in after standing
still outside for that long. Two queries share the text "someone standing still for a long time"
(so the same CLIP score and cue mapping); one is limited to the zone. The zoned one must start its
stillness count at the entry: no alert at once, one after the cue's time in the zone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.episodes import AlertEvent, AlertEventKind
from agent.cameras.store import CameraStore
from agent.decision.core import DecisionCore
from agent.embedding import ClipEncoder
from agent.matching.config import MatchingConfig
from agent.matching.matcher import Matcher
from agent.pose.analyzer import PoseAnalyzer
from agent.pose.config import PoseConfig
from agent.pose.cue_matcher import CueFusion
from agent.pose.estimator import PoseEstimator
from agent.pose.querycues import QueryCues
from agent.pose.sentence import SentenceEmbedder
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry
from agent.zones import ZoneBook
from tests.agent.pose.test_fall_alert import sequence
from tests.agent.pose.test_zone_cues import square, still_person_in_zone
from tests.fixtures import posture_set

MOVE_AT_S = 6.0  # still outside the zone this long, then in it
STILL_LONG_S = 2.0  # the still_long cue is 0.5 after this long still (in the zone)
TEXT = "someone standing still for a long time"


def test_blended_stillness_counts_only_inside_the_zone(
    tmp_path: Path, clip_fp32: Path, pose_config: PoseConfig, sentence_embedder: SentenceEmbedder
) -> None:
    reason = posture_set.available()
    if reason:
        pytest.skip(reason)
    registry = QueryRegistry(tmp_path / "w.db")
    anywhere = registry.add(TEXT, threshold=0.5).id
    zoned = registry.add(TEXT, threshold=0.5, zones=["door"]).id
    frames = sequence(falls=False, seconds=MOVE_AT_S + 6.0)
    store = CameraStore(tmp_path / "w.db")
    store.add(
        {"id": "cam", "uri": "test://ball", "zones": [{"name": "door", "points": square(0.1, 0.1, 0.05)}]}
    )
    cues_2s = pose_config.cues.model_copy(update={"still_long_s": STILL_LONG_S})
    config = pose_config.model_copy(update={"interval_s": 0.5, "cues": cues_2s, "cue_weight": 1.0})
    pose = PoseAnalyzer(config, PoseEstimator(config))
    encoder = ClipEncoder.load(clip_fp32, providers=["cpu"])
    vocabulary = CueVocabulary({"minilm": sentence_embedder.embed})
    cues = QueryCues(registry, vocabulary)
    fusion = CueFusion(pose, cues, config.cue_weight)
    matching = MatchingConfig(window_s=1.0, embed_interval_s=0.5)
    matcher = Matcher(
        matching,
        encoder,
        registry,
        cue_fusion=fusion,
        zones=ZoneBook(store.list_cameras, store.revision, 0.0),
    )
    cues.refresh(force=True)
    mapping = cues.mappings[zoned]
    assert mapping.cue == "still_long" and cues.mappings[anywhere].cue == "still_long"
    weight = config.cue_weight * mapping.confidence  # how much of the blended score is the cue
    assert weight > 0.5, mapping
    opened: list[AlertEvent] = []
    core = DecisionCore(
        matching,
        AlertsConfig(database=tmp_path / "alerts.db", evidence_dir=tmp_path / "evidence"),
        matcher.query,
        lambda events: opened.extend(e for e in events if e.kind is AlertEventKind.OPENED),
        model_versions=matcher.model_versions,
        evidence=matcher.evidence,
    )
    seen = still_person_in_zone(frames, store, MOVE_AT_S, [pose, matcher, core], "samples")
    after = [(t, s) for t, s in seen if t >= MOVE_AT_S]
    assert after and all(str(zoned) in s for _, s in after), "inside the zone: sampled"
    assert all(str(zoned) not in s for t, s in seen if t < MOVE_AT_S), "outside: not sampled"
    first = after[0][1]
    # same text, same CLIP score: the difference is the cue, still 6 s anywhere and 0 s in the zone
    assert first[str(anywhere)] - first[str(zoned)] > 0.9 * weight, first
    late = [s for t, s in after if t >= MOVE_AT_S + 2.5 * STILL_LONG_S]
    assert late and abs(late[-1][str(anywhere)] - late[-1][str(zoned)]) < 0.05 * weight, late[-1]
    by_query = {e.episode.query_id: e.episode.started_at for e in opened}
    assert anywhere in by_query and by_query[anywhere] < MOVE_AT_S, by_query
    assert zoned in by_query, "it fires once they have been still in the zone long enough"
    assert by_query[zoned] >= MOVE_AT_S + STILL_LONG_S * 0.8, ("not at once on stepping in", by_query)
    evidence = matcher.evidence
    assert evidence is not None
    record = evidence("cam", 7, registry.get(zoned), frames[-1][0])
    assert record is not None and record["zone"]["zones"] == ["door"]
    assert 5.0 < record["zone"]["in_zone_s"] <= frames[-1][0] - MOVE_AT_S
    assert "zone" not in (evidence("cam", 7, registry.get(anywhere), frames[-1][0]) or {})
    store.close()
    registry.close()
