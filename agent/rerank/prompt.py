"""Behavioural saliency prediction: the cloze prompt, and tolerant parsing of what the LMM answers.

The LMM sees the person crop (and optionally the frame with the box drawn), fills each numbered
blank of the cloze query or answers UNKNOWN, and gives a yes/no verdict on the whole query, all in
one call. The answer is asked for as JSON ``{"blanks": {"1": ..., ...}, "verdict": "yes"|"no"}``;
parsing accepts code fences, single quotes, trailing commas, lists instead of maps and plain
``1: word`` lines. Whatever cannot be read counts as UNKNOWN; nothing here raises on bad output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.rerank.backends.base import GeneratedToken
from agent.rerank.lexicon import Category
from agent.rerank.masker import ClozeQuery

UNKNOWN = "UNKNOWN"

SYSTEM_PROMPT = (
    "You are a careful visual inspector for a video safety system. You describe only what the image "
    "shows, and you say UNKNOWN when the image does not show it."
)

_CATEGORY_HINT = {
    Category.ACTION: "an action",
    Category.PERSON: "a person",
    Category.OBJECT: "an object or place",
    Category.COLOUR: "a colour",
    Category.CLOTHING: "a piece of clothing",
}

_UNKNOWN_ANSWERS = frozenset(
    {
        "",
        "unknown",
        "unk",
        "n/a",
        "na",
        "none",
        "null",
        "?",
        "not visible",
        "not shown",
        "unclear",
        "cannot tell",
        "can't tell",
        "not sure",
        "no answer",
    }
)
MAX_ANSWER_CHARS = 64


def build_cloze_prompt(cloze: ClozeQuery, include_frame: bool) -> str:
    """The user message: the images' roles, the cloze text, one hint per blank and the JSON form."""
    if include_frame:
        intro = (
            "The first image is a close crop of one person; the second is the whole camera frame with "
            "that person inside a green box."
        )
    else:
        intro = "The image is a close crop of one person from a camera."
    hints = "\n".join(f"[{b.number}]: {_CATEGORY_HINT[b.category]}" for b in cloze.blanks)
    example = ", ".join(f'"{b.number}": "..."' for b in cloze.blanks)
    blanks_part = (
        f"Here is a description of this person's behaviour with some words hidden as numbered blanks:\n"
        f'"{cloze.cloze}"\n'
        f"{hints}\n"
        "Fill each blank with the word(s) the image shows there, or UNKNOWN if the image does not show it.\n"
        if cloze.blanks
        else ""
    )
    return (
        f"{intro}\n{blanks_part}"
        f'Then answer whether the image matches this whole description: "{cloze.query}" (yes or no).\n'
        "Reply with one JSON object only, in this form:\n"
        f'{{"blanks": {{{example}}}, "verdict": "yes or no"}}'
    )


@dataclass(frozen=True)
class ParsedAnswer:
    """What could be read from the LMM's text.

    Attributes:
        answers: blank number -> filled words (lower case), or None for UNKNOWN/missing.
        verdict: "yes", "no" or None when absent or unreadable.
        structured: True when a JSON object was found and read.
    """

    answers: dict[int, str | None]
    verdict: str | None
    structured: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def _normalise_answer(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = re.sub(r"\s+", " ", str(value)).strip().strip("\"'[](){}.,;:").strip()
    if text.lower() in _UNKNOWN_ANSWERS or UNKNOWN.lower() in text.lower():
        return None
    return text.lower()[:MAX_ANSWER_CHARS]


def _verdict_word(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    match = re.match(r"\W*(yes|no|true|false)\b", str(value).strip().lower())
    if match is None:
        return None
    return "yes" if match.group(1) in {"yes", "true"} else "no"


def json_objects(text: str) -> list[str]:
    """Balanced ``{...}`` substrings, outermost first, ignoring braces inside strings."""
    found: list[str] = []
    depth = 0
    start = -1
    quote: str | None = None
    escaped = False
    for index, char in enumerate(text):
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'" and depth > 0:
            quote = char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                found.append(text[start : index + 1])
    if depth > 0 and start >= 0:
        found.append(text[start:] + "}" * depth)  # cut off by the token limit: close it
    return found


def load_lenient_json(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    repaired = re.sub(r",\s*([}\]])", r"\1", candidate)
    repaired = re.sub(r"(?<=[{,\s])'([^'\n]*)'\s*:", r'"\1":', repaired)
    repaired = re.sub(r":\s*'([^'\n]*)'", r': "\1"', repaired)
    repaired = re.sub(r"(?<=[{,])\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", r'"\1":', repaired)
    try:
        return json.loads(repaired)
    except json.JSONDecodeError:
        return None


def _blank_number(key: Any) -> int | None:
    match = re.search(r"\d+", str(key))
    return int(match.group(0)) if match else None


def _answers_from_json(data: dict[str, Any], numbers: Sequence[int]) -> dict[int, str | None]:
    blanks: Any = None
    for key, value in data.items():
        if str(key).lower() in {"blanks", "answers", "fill", "fills", "completion", "completions"}:
            blanks = value
            break
    if blanks is None:  # answers may sit at the top level: {"1": "red", ..., "verdict": "yes"}
        blanks = {k: v for k, v in data.items() if _blank_number(k) is not None}
    answers: dict[int, str | None] = dict.fromkeys(numbers)
    if isinstance(blanks, dict):
        for key, value in blanks.items():
            number = _blank_number(key)
            if number in answers:
                answers[number] = _normalise_answer(value)
    elif isinstance(blanks, list):
        for position, value in enumerate(blanks):
            if isinstance(value, dict):
                number = _blank_number(value.get("number", value.get("blank", position + 1)))
                value = value.get("answer", value.get("word", value.get("text")))
            else:
                number = numbers[position] if position < len(numbers) else None
            if number in answers:
                answers[number] = _normalise_answer(value)
    return answers


def parse_answer(text: str, cloze: ClozeQuery) -> ParsedAnswer:
    """Read blank fills and the verdict from the LMM's text; never raises."""
    numbers = [b.number for b in cloze.blanks]
    stripped = re.sub(r"```(?:json)?", "", text, flags=re.I)
    for candidate in json_objects(stripped):
        data = load_lenient_json(candidate)
        if not isinstance(data, dict):
            continue
        answers = _answers_from_json(data, numbers)
        verdict = None
        for key, value in data.items():
            if str(key).lower() in {"verdict", "match", "matches", "answer"}:
                verdict = _verdict_word(value)
                break
        return ParsedAnswer(answers, verdict, structured=True)
    # No JSON: look for "[1]: red" / "1. red" lines and a "verdict: yes" or a closing yes/no.
    answers_loose: dict[int, str | None] = dict.fromkeys(numbers)
    for match in re.finditer(r"(?m)^\W*\[?(\d+)\]?\s*[:.)=-]\s*(.+?)\s*$", stripped):
        number = int(match.group(1))
        if number in answers_loose and answers_loose[number] is None:
            answers_loose[number] = _normalise_answer(match.group(2))
    verdict_match = re.search(r"verdict\W+(yes|no)\b", stripped, re.I) or re.search(
        r"\b(yes|no)\b[\W]*$", stripped.strip(), re.I
    )
    verdict = verdict_match.group(1).lower() if verdict_match else None
    notes = ("no JSON object in the answer",)
    return ParsedAnswer(answers_loose, verdict, structured=False, notes=notes)


def _yes_no(token_text: str) -> str | None:
    word = re.sub(r"[^a-z]", "", token_text.lower())
    return word if word in {"yes", "no"} else None


def verdict_probability(tokens: Sequence[GeneratedToken]) -> float | None:
    """P(yes) from the token log-probabilities at the verdict, or None when they do not show it.

    The verdict token is the first generated token reading "yes" or "no" after the text "verdict";
    without that key, the last yes/no token. P(yes) = p(yes-like alternatives) / p(yes- or no-like),
    summing every alternative whose letters read yes (" yes", "Yes", '"yes') or no.
    """
    if not tokens:
        return None
    text_so_far = ""
    after_key: int | None = None
    for index, token in enumerate(tokens):
        text_so_far += token.text
        if after_key is None and "verdict" in text_so_far.lower():
            after_key = index + 1
    candidates = range(after_key, len(tokens)) if after_key is not None else range(len(tokens) - 1, -1, -1)
    for index in candidates:
        token = tokens[index]
        if _yes_no(token.text) is None:
            continue
        mass = {"yes": 0.0, "no": 0.0}
        alternatives = dict(token.top_logprobs)
        alternatives.setdefault(token.text, token.logprob)
        for alternative, logprob in alternatives.items():
            word = _yes_no(alternative)
            if word is not None and math.isfinite(logprob):
                mass[word] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        return mass["yes"] / total if total > 0 else None
    return None
