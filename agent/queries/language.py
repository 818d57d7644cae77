"""Whether a standing query's text looks English, which every text model here understands.

CLIP's text encoder, the sentence model that maps queries to behaviour cues (all-MiniLM-L6-v2) and
the cue vocabulary are English. A query in another language is accepted, but it matches little and
maps to no cue; :func:`language_problem` says so, with the reason, when the query is added (the
registry logs it) and in its cue mapping. It is a heuristic on the text alone, so it warns and
never refuses: text mostly in non-ASCII letters, or words of which fewer than a third are common
English words or words of the cue vocabulary.
"""

from __future__ import annotations

import re

# Common English words, those of the cue vocabulary (agent/pose/vocabulary.py; a test keeps them
# here) and those site operators use for people, places and things. Words that are also common in
# other languages written in Latin letters ("no", "a", "de", "la") are left out.
_COMMON = (
    "about above across adult adults after again against all alone along an and another any anybody",
    "anyone are area arm arms around as at away back backpack bag bags bat be been before behind",
    "being below bending between bicycle big bike black bleeding blue both bottle box boxes boy brown",
    "building bus but by can cap car carried carries carry carrying cars cart child children climb",
    "climbed climbing climbs coat collapse collapsed collapses collapsing corridor could counter",
    "crawling crouching crowd cry crying customer danger dangerous dark day desk do does dog door",
    "doors down dress drop dropped dropping during each elderly enter entering enters entrance",
    "everybody everyone exit exiting exits fall fallen falling falls fast fat fell fence few fight",
    "fighting fights fire fleeing floor for forklift fought from front garage gate girl glasses going",
    "gray green grey ground group guard gun hallway hand hands has hat have he head helmet help her",
    "here hide hiding him his hit hitting holding hood hooded hour hours how hurt if in injured",
    "inside into is it its jacket jog jogging jump jumped jumping jumps kicking kid kids kneeling",
    "knife ladder large lay leave leaves leaving left lie lies light lingering lobby loitering long",
    "looking lost lot lots lying man many mask masked men minute minutes more motionless motorbike",
    "motorcycle moving near next night nobody not of off office officer old on one only open or",
    "orange other out outside over package pants parcel park parked parking pedestrian pedestrians",
    "people person phone picking pink place platform police pull pulling pulls purple push pushes",
    "pushing raised raising ran red right road roof room run running runs sat scooter second seconds",
    "several shirt shoes shop short side sit sits sitting slow small smoke smoking some somebody",
    "someone something sprinting squatting staff stairs stand standing stands stay staying stays",
    "steal stealing steals stick still stole stood stopped store strange street suitcase suspicious",
    "talking tall taxi than that the their them there they thin this threw through throw throwing",
    "throws time to too track train tripping trolley truck trying two unconscious under unusual up",
    "upright van vehicle waiting walk walked walking walks wall was waving weapon wearing were what",
    "wheelchair when where while white who window with without woman women worker workers wrong yard",
    "yellow young",
)
ENGLISH_WORDS = frozenset(word for line in _COMMON for word in line.split())
_WORD = re.compile(r"[^\W\d_]{2,}")
ADVICE = "CLIP and the behaviour-cue mapping understand English: it will match little and map to no cue"


def language_problem(text: str) -> str | None:
    """Why ``text`` may not be English (a sentence naming the reason), or None when it looks English."""
    letters = [char for char in text if char.isalpha()]
    foreign = sum(1 for char in letters if not char.isascii())
    if letters and foreign * 2 > len(letters):
        return (
            f"the text is mostly non-ASCII ({foreign} of {len(letters)} letters) and may not be English; "
            + ADVICE
        )
    words = _WORD.findall(text.lower())
    known = [word for word in words if word in ENGLISH_WORDS]
    if len(words) >= 2 and len(known) * 3 < len(words):
        shown = ", ".join(words[:6]) + (", ..." if len(words) > 6 else "")
        return (
            f"{len(known)} of its {len(words)} words ({shown}) are common English words or cue words, "
            f"so it may not be English; {ADVICE}"
        )
    return None
