"""Behavioural saliency prediction: the two turns of the cloze conversation, and tolerant parsing.

The LMM sees the person crop (and optionally the frame with the box drawn). By default the
question takes two turns of one conversation (``cloze_scheme: two_step``):

1. the **cloze turn** shows the query with its behaviour words masked as numbered blanks and asks
   the LMM to fill each blank from the image, or answer UNKNOWN. This turn never contains a masked
   word: the intro, the hints and the system message are checked, and a masked word that the query
   repeats elsewhere is masked there too (:func:`blind_text`). The LMM must recover the words from
   the image alone, as AnomalyLMM intends;
2. the **verdict turn**, after the LMM's answer, reveals the whole query (and, when given, extra
   context such as the person's posture, which is never shown in the cloze turn) and asks yes or no.

``one_step`` is the earlier single call that asks both at once and so shows the masked words; it is
kept to measure what the second turn costs (``bench/rerank.py``), not for use.

Answers are asked for as JSON (``{"blanks": {"1": ..., ...}}``, then ``{"verdict": "yes"|"no"}``);
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
from agent.rerank.lexicon import Category, lemma
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


_INTRO_CROP = "The image is a close crop of one person from a camera."
_INTRO_FRAME = (
    "The first image is a close crop of one person; the second is the whole camera frame with "
    "that person inside a green box."
)
_INTRO_PLAIN = "Look at the image."
_SYSTEM_PLAIN = "Answer from the image alone, and say UNKNOWN when it does not show the answer."
REDACTED = "[?]"
# Small words a multi-word blank may hold that are no clue to it ("falls off", "a lot of").
_NOT_A_CLUE = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "off",
        "on",
        "in",
        "at",
        "to",
        "up",
        "down",
        "out",
        "over",
        "into",
        "onto",
        "from",
        "with",
        "by",
        "for",
        "and",
        "or",
        "his",
        "her",
        "their",
        "its",
    ]
)
_WORD_RE = re.compile(r"[A-Za-z]{2,}")  # hyphens and apostrophes split words: "person's", "t-shirt"


def masked_words(cloze: ClozeQuery) -> frozenset[str]:
    """The words the blanks hide (lower case, with their base forms), small function words excepted."""
    found: set[str] = set()
    for blank in cloze.blanks:
        for word in _WORD_RE.findall(blank.text.lower()):
            if word not in _NOT_A_CLUE:
                found.update({word, lemma(word)})
    return frozenset(found)


def leaked_words(text: str, hidden: frozenset[str]) -> list[str]:
    """The words of ``text`` that are, or share a base form with, a hidden word."""
    return [w for w in _WORD_RE.findall(text) if w.lower() in hidden or lemma(w) in hidden]


def _redact(text: str, hidden: frozenset[str]) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        return REDACTED if word.lower() in hidden or lemma(word) in hidden else word

    return _WORD_RE.sub(swap, text)


def blind_text(cloze: ClozeQuery) -> str:
    """The cloze text with every other occurrence of a masked word masked too (by its blank's number)."""
    numbers: dict[str, int] = {}
    for blank in cloze.blanks:
        for word in _WORD_RE.findall(blank.text.lower()):
            if word not in _NOT_A_CLUE:
                numbers.setdefault(word, blank.number)
                numbers.setdefault(lemma(word), blank.number)

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        number = numbers.get(word.lower(), numbers.get(lemma(word)))
        return word if number is None else f"[{number}]"

    return _WORD_RE.sub(swap, cloze.cloze)


def cloze_system_prompt(cloze: ClozeQuery) -> str:
    """The system message of the cloze turn: :data:`SYSTEM_PROMPT` unless it holds a masked word."""
    hidden = masked_words(cloze)
    for text in (SYSTEM_PROMPT, _SYSTEM_PLAIN):
        if not leaked_words(text, hidden):
            return text
    return _redact(_SYSTEM_PLAIN, hidden)


def build_cloze_turn(cloze: ClozeQuery, include_frame: bool) -> str:
    """The first turn: the masked query, one hint per blank, the JSON form. Holds no masked word.

    A hint or intro that would name a masked word is left out (the plain intro is used); the
    finished text is checked once more and any masked word still in it is replaced by ``[?]``.
    """
    hidden = masked_words(cloze)
    intro = _INTRO_FRAME if include_frame else _INTRO_CROP
    if leaked_words(intro, hidden):
        intro = _INTRO_PLAIN
    hints = []
    for blank in cloze.blanks:
        hint = _CATEGORY_HINT[blank.category]
        hints.append(f"[{blank.number}]" + ("" if leaked_words(hint, hidden) else f": {hint}"))
    example = ", ".join(f'"{b.number}": "..."' for b in cloze.blanks)
    text = (
        f"{intro}\n"
        "Here is a description of what the image shows, with some words hidden as numbered blanks:\n"
        f'"{blind_text(cloze)}"\n'
        + "\n".join(hints)
        + "\nFill each blank with the word(s) the image shows there,"
        " or UNKNOWN if the image does not show it.\n"
        "Reply with one JSON object only, in this form:\n"
        f'{{"blanks": {{{example}}}}}'
    )
    return _redact(text, hidden) if leaked_words(text, hidden) else text


def build_verdict_turn(
    cloze: ClozeQuery, include_frame: bool, context: str | None = None, *, first: bool
) -> str:
    """The verdict turn: the whole query, revealed only now, and the yes/no question.

    Args:
        cloze: the masked query (its ``query`` is shown).
        include_frame: whether a second image (the frame with the box) is shown.
        context: extra facts for the verdict only (e.g. the person's posture); never in the cloze turn.
        first: True when this is the conversation's first turn (a query with no blanks to fill).
    """
    lines = []
    if first:
        lines.append(_INTRO_FRAME if include_frame else _INTRO_CROP)
    else:
        lines.append("Now the whole description, with nothing hidden:")
    if context:
        lines.append(f"What else is known about this person: {context.strip()}")
    lines.append(f'Does the image match this whole description: "{cloze.query}"? Answer yes or no.')
    lines.append('Reply with one JSON object only, in this form:\n{"verdict": "yes or no"}')
    return "\n".join(lines)


def build_cloze_prompt(cloze: ClozeQuery, include_frame: bool) -> str:
    """The one-step prompt (blanks and verdict in one call; it shows the query, so it leaks the
    masked words). Kept only so that ``bench/rerank.py`` can measure what the two-step scheme costs."""
    intro = _INTRO_FRAME if include_frame else _INTRO_CROP
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
