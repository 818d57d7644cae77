"""Word lists behind the rule-based cloze masker and the agreement scorer.

Five categories of behaviour words are masked: actions (verbs and participles), people, objects,
colours and clothing. Verbs are listed by their base form and inflected here (``fall`` -> falls,
falling, fell, fallen); nouns by their singular (plurals are generated). :func:`lemma` maps every
generated form back to its base, so that "fell" agrees with "falling".
"""

from __future__ import annotations

import enum
from functools import cache, lru_cache


class Category(str, enum.Enum):
    """What kind of behaviour word a blank hides."""

    ACTION = "action"
    PERSON = "person"
    OBJECT = "object"
    COLOUR = "colour"
    CLOTHING = "clothing"


def words(text: str) -> list[str]:
    """The whitespace-separated words of a string (keeps the word lists below readable)."""
    return text.split()


# --- verbs -----------------------------------------------------------------------------------------

ACTION_VERBS = words(
    "fall trip slip stumble tumble topple collapse faint crash collide hit strike knock bump smash slam "
    "kick punch push shove pull drag throw toss catch drop jump leap hop dive flip roll spin bounce slide "
    "skid swing climb run walk ride skate ski surf snowboard skateboard drive fight wrestle attack chase "
    "grab hold carry lift sit stand lie lay kneel crawl dance fly land break lose hang fail miss swim play "
    "hug shake steal rob spill splash overturn flee escape crouch bend squat lean wave shoot stab beat hurt "
    "injure trample tackle step sway stagger rush dash sprint jog tip flail plunge crash-land faceplant "
    "wipe burn scream yell shout argue point bite scratch hurl launch"
)

IRREGULAR_FORMS: dict[str, tuple[str, ...]] = {
    "fall": ("fell", "fallen"),
    "hit": ("hit",),
    "strike": ("struck", "stricken"),
    "throw": ("threw", "thrown"),
    "catch": ("caught",),
    "leap": ("leapt",),
    "dive": ("dove", "dived"),
    "spin": ("spun",),
    "slide": ("slid",),
    "swing": ("swung",),
    "run": ("ran", "run"),
    "ride": ("rode", "ridden"),
    "drive": ("drove", "driven"),
    "fight": ("fought",),
    "hold": ("held",),
    "sit": ("sat",),
    "stand": ("stood",),
    "lie": ("lay", "lain", "lying"),
    "lay": ("laid",),
    "kneel": ("knelt",),
    "fly": ("flew", "flown"),
    "break": ("broke", "broken"),
    "lose": ("lost",),
    "hang": ("hung",),
    "swim": ("swam", "swum"),
    "shake": ("shook", "shaken"),
    "steal": ("stole", "stolen"),
    "flee": ("fled",),
    "bend": ("bent",),
    "shoot": ("shot",),
    "beat": ("beaten",),
    "hurt": ("hurt",),
    "bite": ("bit", "bitten"),
}

# Verbs whose final consonant doubles before -ing/-ed (stressed single short vowel).
_DOUBLING = frozenset(
    words(
        "trip slip hit drop hop flip run swim spin skid stab grab hug rob step sit drag slam tip jog "
        "shop stop skip tap pat nap bat wrap"
    )
)

# --- nouns -----------------------------------------------------------------------------------------

PERSON_NOUNS = words(
    "man woman boy girl child kid person guy lady toddler baby teenager teen adult player rider cyclist "
    "biker skier skateboarder snowboarder surfer driver worker pedestrian athlete gymnast dancer runner "
    "jogger swimmer climber officer policeman policewoman customer student gentleman father mother dad "
    "mom son daughter passenger wrestler boxer fighter goalkeeper referee motorcyclist "
    "security-guard police-officer"
)

OBJECT_NOUNS = words(
    "bicycle bike motorcycle motorbike scooter skateboard snowboard surfboard ski car truck bus van train "
    "vehicle door car-door wall fence pole tree branch ladder stairs staircase step ramp rail railing "
    "trampoline pool swimming-pool diving-board water wave ground floor grass snow ice mud sand road street "
    "sidewalk curb table chair bench couch sofa bed desk box ball soccer-ball basketball football bat "
    "racket rope swing slide roof window bottle cup phone camera dog cat horse cow bull goat animal bird "
    "kayak boat canoe hoverboard treadmill goal net hoop cart shopping-cart stroller wheelchair barrier "
    "gate cone traffic-cone stool shelf counter log rock hill cliff bar pull-up-bar bin trash-can umbrella "
    "kite frisbee board pillow cake lake river sea ocean mat toy stick hammer knife gun weapon fire "
    "fountain puddle hole pothole rollerblades skates bucket pole-vault obstacle hurdle"
)

CLOTHING_NOUNS = words(
    "shirt t-shirt tshirt tee jacket coat jeans pants trousers shorts skirt dress hat cap helmet hoodie "
    "sweater sweatshirt top tank-top vest uniform suit shoe sneaker boot sandal heel high-heel slipper "
    "sock glove scarf mask glasses sunglasses goggles backpack bag handbag purse overalls jersey apron "
    "leggings tights swimsuit bikini trunks swim-trunks outfit clothes clothing costume cardigan blouse "
    "polo beanie tie belt raincoat windbreaker pajamas gown robe headband bandana wetsuit baseball-cap "
    "flip-flop"
)

# Clothing words that are clothing only after a colour (``a green top``, not ``on top of``).
AMBIGUOUS_CLOTHING = frozenset({"top", "suit", "tie", "tee", "heel", "trunks", "polo"})

# Nouns that never take a plural -s (already plural, or mass nouns).
_NO_PLURAL = frozenset(
    words(
        "jeans pants trousers shorts glasses sunglasses goggles leggings tights trunks swim-trunks overalls "
        "pajamas clothes clothing stairs water grass snow ice mud sand fire"
    )
)
_IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "person": "people",
    "policeman": "policemen",
    "policewoman": "policewomen",
    "gentleman": "gentlemen",
    "knife": "knives",
    "shelf": "shelves",
    "scarf": "scarves",
    "baby": "babies",
    "lady": "ladies",
}

COLOURS = words(
    "red blue green yellow black white grey gray brown pink purple orange beige navy maroon violet gold "
    "golden silver khaki olive teal turquoise cyan magenta crimson cream tan"
)

# Colour modifiers: masked with the colour that follows ("light blue"); "dark" also alone before clothing.
COLOUR_MODIFIERS = frozenset({"dark", "light", "bright", "pale", "deep", "navy"})

# Words that sound alike in meaning; an answer in the same group as the masked word agrees fully.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "grey gray",
        "bicycle bike",
        "motorcycle motorbike",
        "t-shirt tshirt tee shirt",
        "pants trousers",
        "sneaker shoe",
        "man guy gentleman",
        "woman lady",
        "child kid",
        "person people",
        "sofa couch",
        "fall tumble topple collapse",
        "trip stumble",
        "hit strike",
        "crash collide",
        "push shove",
        "jump leap hop",
        "ground floor",
        "stairs staircase step",
        "hoodie sweatshirt",
        "cap hat",
        "bag handbag purse",
        "sea ocean",
        "toddler baby",
        "teen teenager",
        "car vehicle",
    )
)


# --- inflection ------------------------------------------------------------------------------------


def _third_person(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def _present_participle(base: str) -> str:
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base in _DOUBLING:
        return base + base[-1] + "ing"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    return base + "ing"


def _past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        return base[:-1] + "ied"
    if base in _DOUBLING:
        return base + base[-1] + "ed"
    return base + "ed"


def verb_forms(base: str) -> tuple[str, ...]:
    """Every listed form of a verb: base, -s, -ing, regular past, and irregular past/participles."""
    forms = [base, _third_person(base), _present_participle(base)]
    irregular = IRREGULAR_FORMS.get(base)
    if irregular is None:
        forms.append(_past(base))
    forms.extend(irregular or ())
    return tuple(dict.fromkeys(forms))


def plural(noun: str) -> str:
    """The plural of a listed noun (or the noun itself when it has none)."""
    if noun in _NO_PLURAL:
        return noun
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


_HYPHENATED = frozenset({"t-shirt", "pull-up-bar", "crash-land", "flip-flop"})


def _phrase(entry: str) -> str:
    """Lexicon entries join words with '-' unless the hyphen is part of the word (t-shirt, pull-up)."""
    return entry if entry in _HYPHENATED else entry.replace("-", " ")


@lru_cache(maxsize=1)
def word_table() -> dict[str, tuple[tuple[Category, str], ...]]:
    """Surface form (lower case, words joined by single spaces) -> (category, base form) readings."""
    table: dict[str, list[tuple[Category, str]]] = {}

    def add(form: str, category: Category, base: str) -> None:
        readings = table.setdefault(form, [])
        if (category, base) not in readings:
            readings.append((category, base))

    for verb in ACTION_VERBS:
        base = _phrase(verb)
        for form in verb_forms(base):
            add(form, Category.ACTION, base)
    for nouns, category in (
        (PERSON_NOUNS, Category.PERSON),
        (OBJECT_NOUNS, Category.OBJECT),
        (CLOTHING_NOUNS, Category.CLOTHING),
    ):
        for noun in nouns:
            base = _phrase(noun)
            add(base, category, base)
            head, _, last = base.rpartition(" ")
            add(f"{head} {plural(last)}".strip(), category, base)
    for colour in COLOURS:
        add(colour, Category.COLOUR, colour)
    return {form: tuple(readings) for form, readings in table.items()}


def lemma(word: str) -> str:
    """The base form of a listed word or phrase (lower-cased); unlisted words come back lower-cased."""
    key = " ".join(word.lower().split())
    readings = word_table().get(key)
    return readings[0][1] if readings else key


def synonyms(word: str) -> frozenset[str]:
    """The synonym group of a word's base form (just the base form when it has none)."""
    base = lemma(word)
    for group in SYNONYM_GROUPS:
        if base in group:
            return group
    return frozenset({base})


@cache
def vocabulary(category: Category) -> tuple[str, ...]:
    """The base forms listed for a category, in list order (used as the agreement baseline)."""
    lists = {
        Category.ACTION: ACTION_VERBS,
        Category.PERSON: PERSON_NOUNS,
        Category.OBJECT: OBJECT_NOUNS,
        Category.CLOTHING: CLOTHING_NOUNS,
        Category.COLOUR: COLOURS,
    }
    return tuple(dict.fromkeys(_phrase(entry) for entry in lists[category]))
