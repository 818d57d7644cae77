"""The person's posture reaches the LMM's verdict turn only, never the cloze turn."""

from __future__ import annotations

from agent.pose.context import posture_context
from agent.rerank.config import RerankConfig
from agent.rerank.reranker import Reranker
from tests.agent.rerank.rerank_fakes import ScriptedBackend, make_candidate

POSE = {
    "values": {"upright": 0.01, "lying": 0.97, "fall": 0.93, "running": 0.0, "still_long": 0.0},
    "evidence": {"torso_angle_deg": 84.2, "speed_body_heights_per_s": 0.1},
    "posture": "lying",
}


def test_posture_is_worded_with_the_cues_that_stand_out() -> None:
    candidate = make_candidate()
    assert posture_context(candidate) is None  # no pose evidence, no context
    candidate.pose = POSE
    text = posture_context(candidate)
    assert text is not None
    assert "posture lying" in text and "torso 84 degrees" in text and "fall 0.93" in text
    assert "running" not in text and "can be wrong" in text


def test_the_posture_is_in_the_verdict_turn_and_not_in_the_cloze_turn() -> None:
    backend = ScriptedBackend()
    reranker = Reranker(RerankConfig(), backend, context_for=posture_context)
    candidate = make_candidate(query_text="a person falling down")
    candidate.pose = POSE
    reranker.rerank_candidates([candidate])
    assert len(backend.requests) == 2  # two-step: cloze, then verdict
    cloze, verdict = backend.requests
    cloze_text = (cloze.system or "") + cloze.prompt
    assert "posture" not in cloze_text and "torso" not in cloze_text
    assert "posture lying" in verdict.prompt and "fall 0.93" in verdict.prompt
