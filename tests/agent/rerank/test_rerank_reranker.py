"""The re-ranker end to end on a scripted backend: prompt, parsing, agreement, verdict, fusion, rationale."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rerank_fakes import ScriptedBackend, make_candidate

from agent.rerank.backends.base import GeneratedToken, LmmRequest, LmmResponse
from agent.rerank.config import FusionWeights, RerankConfig
from agent.rerank.reranker import Reranker, RerankItem, frame_with_box

QUERY = "a man in a red jacket falls off his bicycle"


def _config(**overrides: object) -> RerankConfig:
    return RerankConfig.model_validate(
        {"weights": {"coarse": 0.5, "cloze": 0.3, "verdict": 0.2}, **overrides}
    )


def _answer(blanks: dict[str, str], verdict: str) -> LmmResponse:
    return LmmResponse(json.dumps({"blanks": blanks, "verdict": verdict}))


def test_agreeing_answer_raises_the_score_and_explains_it() -> None:
    backend = ScriptedBackend(
        lambda request: _answer({"1": "man", "2": "red", "3": "coat", "4": "fell", "5": "UNKNOWN"}, "yes")
    )
    reranker = Reranker(_config(), backend)
    outcome = reranker.rerank_items([RerankItem(QUERY, 0.4, (np.zeros((8, 8, 3), np.uint8),))])[0]

    blanks = {b["masked"]: b for b in outcome.rationale["blanks"]}
    assert blanks["man"]["agreement"] == 1.0 and blanks["man"]["how"] == "same word"
    assert blanks["falls"]["answer"] == "fell" and blanks["falls"]["agreement"] == 1.0
    assert blanks["bicycle"]["answer"] == "UNKNOWN" and blanks["bicycle"]["agreement"] is None
    assert blanks["jacket"]["how"] == "embedding" and 0.0 <= blanks["jacket"]["agreement"] <= 1.0
    # the unanswered blank carries no weight: the mean is over the four answered ones
    expected_cloze = (1.0 + 1.0 + blanks["jacket"]["agreement"] + 1.0) / 4
    assert outcome.cloze_score == pytest.approx(expected_cloze, abs=1e-4)
    assert outcome.verdict_probability == 1.0 and outcome.verdict_source == "text"
    assert outcome.fused_score == pytest.approx(0.5 * 0.4 + 0.3 * expected_cloze + 0.2 * 1.0, abs=1e-4)
    assert outcome.verified is True and outcome.verification.value == "verified" and outcome.reason is None
    assert outcome.rationale["cloze"] == "a [1] in a [2] [3] [4] off his [5]"
    # two turns of one conversation: the blanks with the query masked, then the verdict
    cloze_turn, verdict_turn = backend.requests
    assert len(cloze_turn.images) == 1 and cloze_turn.system and cloze_turn.json_output
    assert '"a [1] in a [2] [3] [4] off his [5]"' in cloze_turn.prompt and QUERY not in cloze_turn.prompt
    assert verdict_turn.history[0].user == cloze_turn.prompt and QUERY in verdict_turn.prompt
    assert verdict_turn.images == cloze_turn.images and outcome.requests == 2


def test_contradicting_answer_lowers_the_score_below_threshold() -> None:
    tokens = (
        GeneratedToken('{"verdict": "', 0.0, {}),
        GeneratedToken("no", math.log(0.8), {"no": math.log(0.8), "yes": math.log(0.2)}),
    )
    backend = ScriptedBackend(
        lambda request: LmmResponse(
            '{"verdict": "no", "blanks": {"1": "woman", "4": "sitting", "5": "bench"}}', tokens
        )
    )
    outcome = Reranker(_config(), backend).rerank_items(
        [RerankItem(QUERY, 0.6, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    assert outcome.verdict_source == "logprobs"
    assert outcome.verdict_probability == pytest.approx(0.2)
    assert outcome.cloze_score is not None and outcome.cloze_score < 0.5
    assert outcome.fused_score is not None and outcome.fused_score < 0.5
    assert outcome.verified is False


def test_unparseable_output_is_unverified_and_carries_no_weight() -> None:
    backend = ScriptedBackend(lambda request: LmmResponse("\u0007#%!! ,,, }{"))
    outcome = Reranker(_config(), backend).rerank_items(
        [RerankItem(QUERY, 0.7, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    assert all(b["answer"] == "UNKNOWN" for b in outcome.rationale["blanks"])
    assert (
        outcome.cloze_score is None
        and outcome.verdict_probability is None
        and outcome.verdict_source == "none"
    )
    assert outcome.fused_score == pytest.approx(0.7)  # the coarse score, nothing added
    assert outcome.verified is None and outcome.verification.value == "unverified"
    assert outcome.reason == "no_answer" and outcome.rationale["verification_reason"] == "no_answer"
    assert outcome.error is None


@pytest.mark.parametrize("coarse", [0.36, 0.5, 0.6, 0.95])
@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"blanks": {str(n): "UNKNOWN" for n in range(1, 6)}, "verdict": "UNKNOWN"}),
        "lorem ipsum dolor",
        "",
        '{"blanks": {"1": "not visible", "2": "n/a"}}',
    ],
)
def test_silence_is_never_verified_and_never_moves_the_score(text: str, coarse: float) -> None:
    """Finding 5: UNKNOWN, unreadable and empty answers counted 0.5 each, so coarse >= 0.5 was verified."""
    outcome = Reranker(_config(), ScriptedBackend(lambda request: LmmResponse(text))).rerank_items(
        [RerankItem(QUERY, coarse, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    assert outcome.verification.value == "unverified" and outcome.reason == "no_answer"
    assert outcome.verified is None and outcome.fused_score == pytest.approx(coarse)


def test_an_explicit_no_is_rejected_however_high_the_coarse_score() -> None:
    backend = ScriptedBackend(lambda request: LmmResponse('{"verdict": "no"}'))
    outcome = Reranker(_config(), backend).rerank_items(
        [RerankItem(QUERY, 0.95, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    # fused (0.5 * 0.95) / 0.7 = 0.68 passes accept_threshold, but the LMM's own support is 0
    assert outcome.fused_score == pytest.approx(0.5 * 0.95 / 0.7)
    assert outcome.support == 0.0 and outcome.verification.value == "rejected" and outcome.verified is False


def test_an_explicit_yes_alone_verifies() -> None:
    backend = ScriptedBackend(lambda request: LmmResponse('{"verdict": "yes"}'))
    outcome = Reranker(_config(), backend).rerank_items(
        [RerankItem(QUERY, 0.4, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    assert outcome.cloze_score is None and outcome.verdict_probability == 1.0
    assert outcome.fused_score == pytest.approx((0.5 * 0.4 + 0.2) / 0.7)
    assert outcome.verification.value == "verified"


def test_backend_failure_leaves_scores_empty_with_the_error() -> None:
    backend = ScriptedBackend()
    backend.fail = True
    candidate = make_candidate()
    outcome = Reranker(_config(), backend).rerank_candidates([candidate])[0]
    assert outcome.error == "scripted failure"
    assert candidate.fused_score is None and candidate.verified is None
    assert candidate.verification == "unverified" and candidate.verification_reason == "error"
    assert candidate.rationale is not None and candidate.rationale["error"] == "scripted failure"
    assert candidate.final_score == candidate.score


def test_candidates_get_crop_and_frame_and_are_updated_in_place() -> None:
    backend = ScriptedBackend(lambda request: _answer({"2": "red"}, "yes"), max_batch_size=2)
    reranker = Reranker(_config(include_frame=True, accept_threshold=0.1), backend)
    candidates = [make_candidate(score=0.5, track_id=1), make_candidate(score=0.9, track_id=2)]
    outcomes = reranker.rerank_candidates(candidates)
    assert backend.batch_sizes == [2, 2]  # the cloze turns together, then the verdict turns
    crop, frame = backend.requests[0].images
    assert crop.shape[0] < frame.shape[0]  # the crop is smaller than the frame
    assert (crop[:, :, 2] == 255).mean() > 0.5  # and mostly the red "person"
    assert frame[30, 80].tolist() == [0, 255, 0]  # the frame has the green box drawn on the top edge
    assert "green box" in backend.requests[0].prompt
    for candidate, outcome in zip(candidates, outcomes, strict=True):
        assert candidate.fused_score == outcome.fused_score is not None
        assert candidate.verified is True and candidate.rationale == outcome.rationale
        assert candidate.rationale["blanks"][1]["answer"] == "red"


def test_frame_with_box_scales_large_frames() -> None:
    frame = np.zeros((1080, 2048, 3), np.uint8)
    drawn = frame_with_box(frame, (1024.0, 540.0, 1536.0, 1000.0))
    assert drawn.shape == (540, 1024, 3)
    assert drawn[270, 600].tolist() == [0, 255, 0]
    assert frame.max() == 0  # the original is untouched


def test_lmm_masker_uses_the_lmm_words_and_falls_back() -> None:
    def answer(request: LmmRequest) -> LmmResponse:
        if not request.images:  # the masking request is text-only
            return LmmResponse(
                '{"words": [{"text": "falls off", "category": "action"}, {"text": "zzz", "category": "x"}]}'
            )
        return _answer({"1": "tumbles off"}, "yes")

    backend = ScriptedBackend(answer)
    reranker = Reranker(_config(masker="lmm"), backend)
    outcome = reranker.rerank_items([RerankItem(QUERY, 0.5, (np.zeros((8, 8, 3), np.uint8),))] * 2)
    assert outcome[0].rationale["cloze"] == "a man in a red jacket [1] his bicycle"
    assert sum(1 for r in backend.requests if not r.images) == 1  # masks are cached per query
    garbage = ScriptedBackend(lambda request: LmmResponse("no idea"))
    fallback = Reranker(_config(masker="lmm"), garbage).rerank_items(
        [RerankItem(QUERY, 0.5, (np.zeros((8, 8, 3), np.uint8),))]
    )
    assert fallback[0].rationale["cloze"] == "a [1] in a [2] [3] [4] off his [5]"


def test_weights_come_from_config() -> None:
    config = _config(weights={"coarse": 1.0, "cloze": 0.0, "verdict": 0.0})
    backend = ScriptedBackend(lambda request: _answer({"1": "woman"}, "no"))
    outcome = Reranker(config, backend).rerank_items(
        [RerankItem(QUERY, 0.42, (np.zeros((8, 8, 3), np.uint8),))]
    )[0]
    assert outcome.fused_score == pytest.approx(0.42)
    assert FusionWeights().model_dump() == {"coarse": 0.5, "cloze": 0.3, "verdict": 0.2}
