"""Limits on what one standing query may hold, shared by the registry, the API and the CLI.

Each normal prompt is a text embedding kept per query and a column of the scoring tensor, so
their count is bounded; so are the cameras a query names (ids like the config's). Text may be any
ordinary Unicode (emoji sequences joined by U+200D included); control characters and invisible
format characters (bidirectional overrides, zero-width spaces) are refused.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# The one limit on a standing query's text (trimmed), wherever it comes from: the CLI, the API, the
# console's try-before-you-save, the YAML's ``queries:``. The registry's check is the one that counts.
MAX_QUERY_TEXT_CHARS = 500
MAX_NORMAL_PROMPTS = 32
MAX_CAMERAS_PER_QUERY = 64
MAX_COOLDOWN_S = 7 * 86400.0
# Invisible format characters (Unicode category Cf) are refused except those ordinary text needs:
# the zero-width joiner and non-joiner (emoji sequences, Indic and Persian scripts) and the tag
# characters of subdivision flag emoji. Bidi overrides (Trojan Source) and zero-width spaces stay out.
ALLOWED_FORMAT_CHARS = frozenset({0x200C, 0x200D, *range(0xE0020, 0xE0080)})
_CAMERA_ID = re.compile(CAMERA_ID)


def refused_char(text: str) -> tuple[int, str] | None:
    """The position and character of the first control character of ``text``, or None."""
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cc" or (category == "Cf" and ord(char) not in ALLOWED_FORMAT_CHARS):
            return position, char
    return None


def camera_id_problem(camera_id: str) -> str | None:
    """Why ``camera_id`` is not a valid camera id, or None."""
    if not _CAMERA_ID.match(camera_id):
        return f"camera id {camera_id[:80]!r} must be 1 to 64 letters, digits, '_', '.' or '-'"
    return None


def cooldown_problem(cooldown_s: float) -> str | None:
    """Why ``cooldown_s`` is not a usable cooldown in seconds, or None."""
    if (
        not isinstance(cooldown_s, int | float)
        or isinstance(cooldown_s, bool)
        or not math.isfinite(cooldown_s)
    ):
        return f"cooldown must be a finite number of seconds, got {cooldown_s!r}"
    if not 0 <= cooldown_s <= MAX_COOLDOWN_S:
        return f"cooldown must be between 0 and {MAX_COOLDOWN_S:.0f} s, got {cooldown_s}"
    return None


def unknown_cameras(cameras: Collection[str] | None, known: Collection[str] | None) -> list[str]:
    """The ids in ``cameras`` that ``known`` (the site's cameras, when known) does not hold."""
    if cameras is None or known is None:
        return []
    return sorted(set(cameras) - set(known))
