"""Masked cross-modal prompting: turn a query into a cloze prompt with numbered blanks.

The query's behaviour words (actions, the people and objects involved, colours and clothing) are
replaced by ``[1]``, ``[2]``, ... and the map from blank to masked words is kept, so the LMM's fill
of each blank can be compared with what the query said.

:class:`RuleMasker` (the default) uses the word lists of :mod:`agent.rerank.lexicon` plus light
part-of-speech heuristics: a word listed both as a verb and a noun ("swing", "slide", "wave") is a
noun after a determiner or colour and a verb otherwise; an unlisted ``-ing`` word after an
auxiliary, a person or a conjunction like "while" is an action ("is juggling", "while crossing");
an unlisted ``-ed`` word after an auxiliary is a participle ("being zapped"); ambiguous clothing
words ("top", "suit") count only after a colour. :class:`LmmMasker` asks an LMM for the words to
mask and falls back to the rule masker when its answer cannot be used.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from agent.rerank.lexicon import AMBIGUOUS_CLOTHING, COLOUR_MODIFIERS, COLOURS, Category, word_table, words

log = logging.getLogger(__name__)

_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")

DETERMINERS = frozenset(
    words(
        "a an the his her their its my your our this that these those another one two three four some "
        "several many each every any"
    )
)
AUXILIARIES = frozenset(words("is are was were be been being am gets get got getting keeps starts begins"))
PRONOUNS = frozenset(words("he she they someone somebody who it"))
# Words after which an unlisted -ing word is taken as an action.
_ING_TRIGGERS = (
    AUXILIARIES | PRONOUNS | frozenset(words("while after before when by from without upon and then"))
)
# Never masked as actions: they describe appearance or perception, not behaviour.
NOT_ACTIONS = frozenset(
    words(
        "wearing wear wears wore dressed clad has have having seen shown appears appear looks look "
        "seems seem being been"
    )
)
_NOT_VERB_ING = frozenset(
    words(
        "building clothing ceiling morning evening something nothing anything everything thing ring "
        "king wing string spring railing awning during sibling ending pudding stocking painting wedding "
        "parking "
        "swimming diving"
    )
)
_NOT_VERB_ED = frozenset(
    words(
        "red bed shed sled striped dressed colored coloured haired sleeved hooded aged tired naked skinned "
        "checkered patterned"
    )
)
_COLOUR_WORDS = frozenset(COLOURS)
_HYPHEN_COLOUR_PARTS = _COLOUR_WORDS | COLOUR_MODIFIERS | {"and", "colored", "coloured"}

# When a query has more behaviour words than blanks allowed, keep these categories first.
PRIORITY = (Category.ACTION, Category.OBJECT, Category.PERSON, Category.CLOTHING, Category.COLOUR)
_MERGE_ADJACENT = frozenset({Category.OBJECT, Category.CLOTHING, Category.PERSON})


@dataclass(frozen=True)
class Blank:
    """One masked span of the query.

    Attributes:
        number: 1-based number shown in the cloze prompt as ``[number]``.
        text: the masked words exactly as the query wrote them.
        category: what kind of behaviour word it is.
        start, end: character offsets of the span in the query.
    """

    number: int
    text: str
    category: Category
    start: int
    end: int


@dataclass(frozen=True)
class ClozeQuery:
    """A query with its behaviour words masked into numbered blanks."""

    query: str
    blanks: tuple[Blank, ...]

    @property
    def cloze(self) -> str:
        """The query with each blank's span replaced by ``[n]``."""
        parts: list[str] = []
        position = 0
        for blank in self.blanks:
            parts.append(self.query[position : blank.start])
            parts.append(f"[{blank.number}]")
            position = blank.end
        parts.append(self.query[position:])
        return "".join(parts)

    @classmethod
    def from_spans(cls, query: str, spans: list[tuple[int, int, Category]]) -> ClozeQuery:
        """Build from (start, end, category) character spans; overlapping spans are dropped."""
        blanks: list[Blank] = []
        last_end = -1
        for start, end, category in sorted(spans):
            if start < last_end or end <= start:
                continue
            blanks.append(Blank(len(blanks) + 1, query[start:end], category, start, end))
            last_end = end
        return cls(query, tuple(blanks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "cloze": self.cloze,
            "blanks": [
                {"number": b.number, "text": b.text, "category": b.category.value} for b in self.blanks
            ],
        }


class Masker(Protocol):
    """Turns a query into a cloze query."""

    def mask(self, query: str) -> ClozeQuery: ...


@dataclass
class _Token:
    text: str
    key: str  # lower case, possessive 's removed
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        end = match.end()
        key = word.lower()
        if key.endswith("'s"):
            key = key[:-2]
            end -= 2
        tokens.append(_Token(word, key, match.start(), end))
    return tokens


class RuleMasker:
    """The default masker: lexicon plus part-of-speech heuristics (see the module docstring).

    Args:
        max_blanks: at most this many blanks per query; beyond it, categories are kept in the order
            action, object, person, clothing, colour, and earlier words before later ones.
    """

    def __init__(self, max_blanks: int = 6) -> None:
        if max_blanks < 1:
            raise ValueError("max_blanks must be at least 1")
        self.max_blanks = max_blanks
        self._table = word_table()

    def mask(self, query: str) -> ClozeQuery:
        tokens = _tokens(query)
        spans: list[tuple[int, int, Category]] = []  # token index ranges [i, j) with category
        i = 0
        while i < len(tokens):
            found = self._phrase_at(tokens, i) or self._word_at(tokens, i, spans)
            if found is None:
                i += 1
                continue
            length, category = found
            spans.append((i, i + length, category))
            i += length
        spans = self._merge_adjacent(tokens, spans)
        spans = self._limit(spans)
        return ClozeQuery.from_spans(query, [(tokens[i].start, tokens[j - 1].end, c) for i, j, c in spans])

    # --- classification ----------------------------------------------------------------------

    def _phrase_at(self, tokens: list[_Token], i: int) -> tuple[int, Category] | None:
        """Multi-word lexicon entries ("car door", "light blue"), longest first."""
        for length in (3, 2):
            if i + length > len(tokens) or not self._contiguous(tokens, i, i + length):
                continue
            phrase = " ".join(t.key for t in tokens[i : i + length])
            readings = self._table.get(phrase)
            if readings:
                return length, readings[0][0]
        if (
            i + 1 < len(tokens)
            and tokens[i].key in COLOUR_MODIFIERS
            and self._is_colour(tokens[i + 1].key)
            and self._contiguous(tokens, i, i + 2)
        ):
            return 2, Category.COLOUR
        return None

    def _word_at(
        self, tokens: list[_Token], i: int, spans: list[tuple[int, int, Category]]
    ) -> tuple[int, Category] | None:
        key = tokens[i].key
        if key in NOT_ACTIONS:
            return None
        if self._is_colour(key):
            return 1, Category.COLOUR
        next_key = tokens[i + 1].key if i + 1 < len(tokens) else ""
        if key in {"dark", "light"} and self._reading(next_key, Category.CLOTHING):
            return 1, Category.COLOUR
        readings = self._table.get(key, ())
        categories = [category for category, _ in readings]
        if categories:
            nouns = [c for c in categories if c is not Category.ACTION]
            if Category.ACTION in categories and nouns:
                return 1, nouns[0] if self._noun_context(tokens, i, spans) else Category.ACTION
            category = categories[0]
            if category is Category.CLOTHING and key in AMBIGUOUS_CLOTHING:
                return (1, category) if self._after_colour(spans, i) else None
            return 1, category
        return self._heuristic_action(tokens, i)

    def _heuristic_action(self, tokens: list[_Token], i: int) -> tuple[int, Category] | None:
        key = tokens[i].key
        previous = tokens[i - 1].key if i > 0 else ""
        after_trigger = previous in _ING_TRIGGERS or self._reading(previous, Category.PERSON)
        if len(key) > 4 and key.endswith("ing") and key not in _NOT_VERB_ING and after_trigger:
            return 1, Category.ACTION
        if len(key) > 4 and key.endswith("ed") and key not in _NOT_VERB_ED and previous in AUXILIARIES:
            return 1, Category.ACTION
        return None

    def _noun_context(self, tokens: list[_Token], i: int, spans: list[tuple[int, int, Category]]) -> bool:
        """True when a verb/noun word reads as a noun: after a determiner or colour, maybe with adjectives."""
        if self._after_colour(spans, i):
            return True
        for back in range(i - 1, max(-1, i - 4), -1):
            key = tokens[back].key
            if key in DETERMINERS:
                return True
            if key in self._table or key in AUXILIARIES or key in PRONOUNS or key in NOT_ACTIONS:
                return False
            # an unlisted word (an adjective such as "large") may sit between determiner and noun
        return False

    def _after_colour(self, spans: list[tuple[int, int, Category]], i: int) -> bool:
        return bool(spans) and spans[-1][1] == i and spans[-1][2] is Category.COLOUR

    def _is_colour(self, key: str) -> bool:
        if key in _COLOUR_WORDS:
            return True
        parts = key.split("-")
        return (
            len(parts) > 1
            and all(p in _HYPHEN_COLOUR_PARTS for p in parts)
            and any(p in _COLOUR_WORDS for p in parts)
        )

    def _reading(self, key: str, category: Category) -> bool:
        return any(c is category for c, _ in self._table.get(key, ()))

    @staticmethod
    def _contiguous(tokens: list[_Token], i: int, j: int) -> bool:
        """Tokens i..j-1 are separated by single spaces only (no punctuation in between)."""
        return all(tokens[k + 1].start - tokens[k].end == 1 for k in range(i, j - 1))

    # --- post-processing ---------------------------------------------------------------------

    def _merge_adjacent(
        self, tokens: list[_Token], spans: list[tuple[int, int, Category]]
    ) -> list[tuple[int, int, Category]]:
        """Join compound nouns the lexicon does not list ("bike ramp") into one blank."""
        merged: list[tuple[int, int, Category]] = []
        for span in spans:
            if merged:
                start, end, category = merged[-1]
                if (
                    category is span[2]
                    and category in _MERGE_ADJACENT
                    and end == span[0]
                    and self._contiguous(tokens, end - 1, span[0] + 1)
                ):
                    merged[-1] = (start, span[1], category)
                    continue
            merged.append(span)
        return merged

    def _limit(self, spans: list[tuple[int, int, Category]]) -> list[tuple[int, int, Category]]:
        if len(spans) <= self.max_blanks:
            return spans
        ranked = sorted(spans, key=lambda s: (PRIORITY.index(s[2]), s[0]))
        return sorted(ranked[: self.max_blanks])


class CachedMasker:
    """Remembers the masks of recent queries (standing queries repeat); thread-safe."""

    def __init__(self, masker: Masker, max_entries: int = 1024) -> None:
        self._masker = masker
        self._max = max_entries
        self._cache: OrderedDict[str, ClozeQuery] = OrderedDict()
        self._lock = threading.Lock()

    def mask(self, query: str) -> ClozeQuery:
        with self._lock:
            cached = self._cache.get(query)
            if cached is not None:
                self._cache.move_to_end(query)
                return cached
        result = self._masker.mask(query)
        with self._lock:
            self._cache[query] = result
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return result


def spans_for_words(query: str, phrases: list[tuple[str, Category]]) -> list[tuple[int, int, Category]]:
    """Locate each (words, category) in the query: whole words, case-insensitive, first unused match."""
    spans: list[tuple[int, int, Category]] = []
    taken: list[tuple[int, int]] = []
    for text, category in phrases:
        phrase = " ".join(text.split())
        if not phrase:
            continue
        body = re.escape(phrase).replace(r"\ ", r"\s+")
        pattern = re.compile(r"(?<![A-Za-z])" + body + r"(?![A-Za-z])", re.IGNORECASE)
        for match in pattern.finditer(query):
            if all(match.end() <= s or match.start() >= e for s, e in taken):
                spans.append((match.start(), match.end(), category))
                taken.append((match.start(), match.end()))
                break
    return spans
