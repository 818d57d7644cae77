"""The rule-based cloze masker on hand-written PAB-style captions, with the blanks a reader expects."""

from __future__ import annotations

import pytest

from agent.rerank.lexicon import Category, lemma, synonyms, verb_forms
from agent.rerank.masker import ClozeQuery, RuleMasker, spans_for_words

A, P, OBJ, C, W = Category.ACTION, Category.PERSON, Category.OBJECT, Category.COLOUR, Category.CLOTHING

# (caption, expected cloze, expected (masked words, category) in order)
CASES: list[tuple[str, str, list[tuple[str, Category]]]] = [
    (
        "A man in a red jacket falls off his bicycle.",
        "A [1] in a [2] [3] [4] off his [5].",
        [("man", P), ("red", C), ("jacket", W), ("falls", A), ("bicycle", OBJ)],
    ),
    (
        "A woman wearing a white dress is being hit by a car door.",
        "A [1] wearing a [2] [3] is being [4] by a [5].",
        [("woman", P), ("white", C), ("dress", W), ("hit", A), ("car door", OBJ)],
    ),
    (
        "A boy in blue shorts slips on the wet floor.",
        "A [1] in [2] [3] [4] on the wet [5].",
        [("boy", P), ("blue", C), ("shorts", W), ("slips", A), ("floor", OBJ)],
    ),
    (
        "Two men are fighting in the street.",
        "Two [1] are [2] in the [3].",
        [("men", P), ("fighting", A), ("street", OBJ)],
    ),
    (
        "A skateboarder wearing a black helmet crashes into a wall.",
        "A [1] wearing a [2] [3] [4] into a [5].",
        [("skateboarder", P), ("black", C), ("helmet", W), ("crashes", A), ("wall", OBJ)],
    ),
    (
        # seven behaviour words, six blanks: the colour is the first to stay unmasked
        "A girl with a pink backpack trips over a curb and falls to the ground.",
        "A [1] with a pink [2] [3] over a [4] and [5] to the [6].",
        [("girl", P), ("backpack", W), ("trips", A), ("curb", OBJ), ("falls", A), ("ground", OBJ)],
    ),
    (
        "A person in a light blue shirt is knocked over by a large wave.",
        "A [1] in a [2] [3] is [4] over by a large [5].",
        [("person", P), ("light blue", C), ("shirt", W), ("knocked", A), ("wave", OBJ)],
    ),
    (
        # "juggling" is in no list: an -ing word after "is" reads as an action
        "A man in a gray hoodie is juggling on a trampoline.",
        "A [1] in a [2] [3] is [4] on a [5].",
        [("man", P), ("gray", C), ("hoodie", W), ("juggling", A), ("trampoline", OBJ)],
    ),
    (
        "A kid on a scooter collides with a dog.",
        "A [1] on a [2] [3] with a [4].",
        [("kid", P), ("scooter", OBJ), ("collides", A), ("dog", OBJ)],
    ),
    (
        # "swing" after "a" is the object, not the verb
        "A woman in a black t-shirt and jeans is pushed off a swing.",
        "A [1] in a [2] [3] and [4] is [5] off a [6].",
        [("woman", P), ("black", C), ("t-shirt", W), ("jeans", W), ("pushed", A), ("swing", OBJ)],
    ),
    (
        # "crossing" after "while" reads as an action
        "A cyclist is hit by a truck while crossing the road.",
        "A [1] is [2] by a [3] while [4] the [5].",
        [("cyclist", P), ("hit", A), ("truck", OBJ), ("crossing", A), ("road", OBJ)],
    ),
    (
        # "dark" alone before clothing is a colour
        "A man in dark clothes is climbing a ladder.",
        "A [1] in [2] [3] is [4] a [5].",
        [("man", P), ("dark", C), ("clothes", W), ("climbing", A), ("ladder", OBJ)],
    ),
    (
        "A snowboarder loses balance and tumbles down the hill.",
        "A [1] [2] balance and [3] down the [4].",
        [("snowboarder", P), ("loses", A), ("tumbles", A), ("hill", OBJ)],
    ),
    (
        "A girl jumps into the swimming pool.",
        "A [1] [2] into the [3].",
        [("girl", P), ("jumps", A), ("swimming pool", OBJ)],
    ),
    (
        "A man wearing a yellow vest is dragged by a horse.",
        "A [1] wearing a [2] [3] is [4] by a [5].",
        [("man", P), ("yellow", C), ("vest", W), ("dragged", A), ("horse", OBJ)],
    ),
    (
        # "top" after a colour is clothing
        "A toddler in a green top stumbles and drops a cup.",
        "A [1] in a [2] [3] [4] and [5] a [6].",
        [("toddler", P), ("green", C), ("top", W), ("stumbles", A), ("drops", A), ("cup", OBJ)],
    ),
    (
        # ... and "on top of" is not
        "A man lies on top of the car.",
        "A [1] [2] on top of the [3].",
        [("man", P), ("lies", A), ("car", OBJ)],
    ),
    (
        "A woman on a swing is swinging very high.",
        "A [1] on a [2] is [3] very high.",
        [("woman", P), ("swing", OBJ), ("swinging", A)],
    ),
    (
        # "wearing" describes appearance, not behaviour
        "Someone wearing a red cap is being chased by a goat.",
        "Someone wearing a [1] [2] is being [3] by a [4].",
        [("red", C), ("cap", W), ("chased", A), ("goat", OBJ)],
    ),
    (
        "A man in a white shirt kicks a soccer ball at a window.",
        "A [1] in a [2] [3] [4] a [5] at a [6].",
        [("man", P), ("white", C), ("shirt", W), ("kicks", A), ("soccer ball", OBJ), ("window", OBJ)],
    ),
    (
        "A boy is flipping backwards off a diving board.",
        "A [1] is [2] backwards off a [3].",
        [("boy", P), ("flipping", A), ("diving board", OBJ)],
    ),
    (
        # a hyphenated colour is one blank; the verb "slides" and the noun "slide" are told apart
        "A woman in a black-and-white striped dress slides down a slide.",
        "A [1] in a [2] striped [3] [4] down a [5].",
        [("woman", P), ("black-and-white", C), ("dress", W), ("slides", A), ("slide", OBJ)],
    ),
    (
        "A player wearing a red jersey is tackled to the ground.",
        "A [1] wearing a [2] [3] is [4] to the [5].",
        [("player", P), ("red", C), ("jersey", W), ("tackled", A), ("ground", OBJ)],
    ),
    (
        "A woman walking a dog is knocked down by a cyclist.",
        "A [1] [2] a [3] is [4] down by a [5].",
        [("woman", P), ("walking", A), ("dog", OBJ), ("knocked", A), ("cyclist", P)],
    ),
    (
        "An elderly man in a brown coat faints on the sidewalk.",
        "An elderly [1] in a [2] [3] [4] on the [5].",
        [("man", P), ("brown", C), ("coat", W), ("faints", A), ("sidewalk", OBJ)],
    ),
    (
        # "zapped" is in no list: an -ed word after "being" is a participle
        "A man is being zapped by an electric fence.",
        "A [1] is being [2] by an electric [3].",
        [("man", P), ("zapped", A), ("fence", OBJ)],
    ),
    (
        "The man's bike hits a large rock.",
        "The [1]'s [2] [3] a large [4].",
        [("man", P), ("bike", OBJ), ("hits", A), ("rock", OBJ)],
    ),
]


@pytest.mark.parametrize(("caption", "cloze", "blanks"), CASES, ids=[c[0][:40] for c in CASES])
def test_rule_masker_blanks(caption: str, cloze: str, blanks: list[tuple[str, Category]]) -> None:
    result = RuleMasker(max_blanks=6).mask(caption)
    assert [(b.text, b.category) for b in result.blanks] == blanks
    assert result.cloze == cloze
    assert [b.number for b in result.blanks] == list(range(1, len(blanks) + 1))
    for blank in result.blanks:
        assert caption[blank.start : blank.end] == blank.text


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


def test_max_blanks_keeps_actions_before_colours() -> None:
    caption = "A man in a red jacket falls off his bicycle."
    result = RuleMasker(max_blanks=2).mask(caption)
    assert [(b.text, b.category) for b in result.blanks] == [("falls", A), ("bicycle", OBJ)]
    assert result.cloze == "A man in a red jacket [1] off his [2]."


def test_query_without_behaviour_words_has_no_blanks() -> None:
    result = RuleMasker().mask("It is very quiet here.")
    assert result.blanks == ()
    assert result.cloze == "It is very quiet here."


def test_from_spans_numbers_in_text_order_and_drops_overlaps() -> None:
    query = "a man falls"
    result = ClozeQuery.from_spans(query, [(6, 11, A), (2, 5, P), (3, 7, OBJ)])
    assert [(b.number, b.text) for b in result.blanks] == [(1, "man"), (2, "falls")]
    assert result.to_dict()["cloze"] == "a [1] [2]"


def test_spans_for_words_matches_whole_words_once_each() -> None:
    query = "A man and another man fall; the manhole is open."
    spans = spans_for_words(query, [("man", P), ("man", P), ("fall", A), ("hole", OBJ)])
    assert [query[s:e] for s, e, _ in spans] == ["man", "man", "fall"]


def test_inflections_and_lemmas() -> None:
    assert set(verb_forms("fall")) == {"fall", "falls", "falling", "fell", "fallen"}
    assert set(verb_forms("trip")) == {"trip", "trips", "tripping", "tripped"}
    assert set(verb_forms("ride")) == {"ride", "rides", "riding", "rode", "ridden"}
    assert lemma("Fell") == "fall"
    assert lemma("children") == "child"
    assert lemma("car doors") == "car door"
    assert lemma("unlisted") == "unlisted"
    assert synonyms("bikes") == synonyms("bicycle")
