"""The LMM-assisted masker: the LMM picks the behaviour words to mask, the rule masker is the fallback.

The LMM gets the query text alone (no image) and answers with a JSON list of words and categories.
Each word must occur in the query (whole words, case-insensitive) and each category must be one of
the five; the rest is ignored. When nothing usable comes back, or the backend fails, the rule
masker's answer is used, so masking never fails. Wrap it in a cache: one LMM call per distinct query.
"""

from __future__ import annotations

import json
import logging
import re

from agent.rerank.backends.base import LmmBackend, LmmError, LmmRequest
from agent.rerank.lexicon import Category
from agent.rerank.masker import PRIORITY, ClozeQuery, Masker, spans_for_words
from agent.rerank.prompt import json_objects, load_lenient_json

log = logging.getLogger(__name__)

MASK_PROMPT = (
    "Find the words in this description that say what the person does or looks like: action verbs and "
    "participles, the people and objects involved, colours and clothing.\n"
    'Description: "{query}"\n'
    "Copy each word or short phrase exactly as it appears, with its category (action, person, object, "
    "colour or clothing). Reply with one JSON object only, in this form:\n"
    '{{"words": [{{"text": "...", "category": "action"}}]}}'
)

_CATEGORY_NAMES = {c.value: c for c in Category} | {"color": Category.COLOUR, "verb": Category.ACTION}


def _parse_words(text: str) -> list[tuple[str, Category]]:
    for candidate in json_objects(re.sub(r"```(?:json)?", "", text, flags=re.I)):
        data = load_lenient_json(candidate)
        if not isinstance(data, dict):
            continue
        entries = next((v for v in data.values() if isinstance(v, list)), [])
        words: list[tuple[str, Category]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            word = entry.get("text", entry.get("word"))
            category = _CATEGORY_NAMES.get(str(entry.get("category", "")).strip().lower())
            if isinstance(word, str) and category is not None:
                words.append((word, category))
        return words
    return []


class LmmMasker:
    """Masks with the LMM's choice of words; see the module docstring.

    Args:
        backend: the LMM to ask (one text-only request per call of :meth:`mask`).
        fallback: used when the LMM's answer has no usable word or the call fails.
        max_blanks: at most this many blanks, kept in the rule masker's category priority.
    """

    def __init__(self, backend: LmmBackend, fallback: Masker, max_blanks: int = 6) -> None:
        self.backend = backend
        self.fallback = fallback
        self.max_blanks = max_blanks

    def mask(self, query: str) -> ClozeQuery:
        try:
            response = self.backend.generate([LmmRequest(MASK_PROMPT.format(query=query), json_output=True)])[
                0
            ]
        except LmmError as exc:
            log.warning("LMM masker failed, using the rule masker: %s", exc)
            return self.fallback.mask(query)
        spans = spans_for_words(query, _parse_words(response.text))
        if not spans:
            log.info("LMM masker gave no usable words for %s; using the rule masker", json.dumps(query))
            return self.fallback.mask(query)
        spans.sort(key=lambda s: (PRIORITY.index(s[2]), s[0]))
        return ClozeQuery.from_spans(query, spans[: self.max_blanks])
