"""The cloze prompt, tolerant parsing of LMM answers, and the verdict probability from log-probabilities."""

from __future__ import annotations

import math

import pytest

from agent.rerank.backends.base import GeneratedToken
from agent.rerank.masker import RuleMasker
from agent.rerank.prompt import build_cloze_prompt, parse_answer, verdict_probability

QUERY = "A man in a red jacket falls off his bicycle."
CLOZE = RuleMasker().mask(QUERY)  # [1] man, [2] red, [3] jacket, [4] falls, [5] bicycle


def test_prompt_shows_cloze_hints_and_json_form() -> None:
    prompt = build_cloze_prompt(CLOZE, include_frame=False)
    assert '"A [1] in a [2] [3] [4] off his [5]."' in prompt
    assert "[2]: a colour" in prompt and "[4]: an action" in prompt and "[5]: an object or place" in prompt
    assert '"1": "..."' in prompt and '"5": "..."' in prompt and '"verdict"' in prompt
    assert "UNKNOWN" in prompt
    assert "green box" not in prompt
    assert "green box" in build_cloze_prompt(CLOZE, include_frame=True)


def test_well_formed_json() -> None:
    text = (
        '{"blanks": {"1": "Man", "2": "red", "3": "UNKNOWN", "4": "falling", "5": "bike"}, "verdict": "Yes"}'
    )
    parsed = parse_answer(text, CLOZE)
    assert parsed.structured
    assert parsed.answers == {1: "man", 2: "red", 3: None, 4: "falling", 5: "bike"}
    assert parsed.verdict == "yes"


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"blanks": {"1": "man", "4": "falls"}, "verdict": "no"}\n```',
        "Sure! {'blanks': {'1': 'man', '4': 'falls',}, 'verdict': 'no',} Hope this helps.",
        '{blanks: {"[1]": "man", "blank4": "falls"}, verdict: "no"}',
        '{"blanks": ["man", null, null, "falls"], "verdict": false}',
        '{"1": "man", "4": "falls", "verdict": "No, he is standing"}',
    ],
)
def test_lenient_json_variants(text: str) -> None:
    parsed = parse_answer(text, CLOZE)
    assert parsed.structured
    assert parsed.answers[1] == "man" and parsed.answers[4] == "falls"
    assert parsed.answers[2] is None and parsed.answers[5] is None
    assert parsed.verdict == "no"


def test_truncated_json_is_closed_and_read() -> None:
    parsed = parse_answer('{"blanks": {"1": "woman", "2": "blue"', CLOZE)
    assert parsed.answers[1] == "woman" and parsed.answers[2] == "blue"
    assert parsed.verdict is None


def test_plain_lines_without_json() -> None:
    parsed = parse_answer("[1]: woman\n[2]: not visible\n4. slipping\nVerdict: yes", CLOZE)
    assert not parsed.structured
    assert parsed.answers == {1: "woman", 2: None, 3: None, 4: "slipping", 5: None}
    assert parsed.verdict == "yes"


@pytest.mark.parametrize("text", ["", "\x00\x01 garbage", "{{{{", "}", "[1, 2, 3]", "null"])
def test_garbage_counts_as_unknown_without_raising(text: str) -> None:
    parsed = parse_answer(text, CLOZE)
    assert all(answer is None for answer in parsed.answers.values())
    assert set(parsed.answers) == {1, 2, 3, 4, 5}
    assert parsed.verdict is None


def _tokens(*pieces: tuple[str, float, dict[str, float]]) -> tuple[GeneratedToken, ...]:
    return tuple(GeneratedToken(text, logprob, top) for text, logprob, top in pieces)


def test_verdict_probability_sums_yes_and_no_variants_after_the_key() -> None:
    tokens = _tokens(
        ('{"', 0.0, {}),
        ("blanks", 0.0, {}),
        ('": {"1": "no"}, "', 0.0, {}),  # a "no" inside the blanks must not count
        ("verdict", 0.0, {}),
        ('": "', 0.0, {}),
        (
            "yes",
            math.log(0.6),
            {"yes": math.log(0.6), "Yes": math.log(0.1), "no": math.log(0.2), "maybe": -1.0},
        ),
        ('"}', 0.0, {}),
    )
    assert verdict_probability(tokens) == pytest.approx(0.7 / 0.9)


def test_verdict_probability_without_key_uses_last_yes_no_token() -> None:
    tokens = _tokens(("No", math.log(0.9), {"No": math.log(0.9), " yes": math.log(0.05)}), (".", 0.0, {}))
    assert verdict_probability(tokens) == pytest.approx(0.05 / 0.95)


def test_verdict_probability_absent() -> None:
    assert verdict_probability(()) is None
    assert verdict_probability(_tokens(("hello", -0.1, {"hi": -2.0}))) is None
