"""The pattern of a zone's name (a leaf module: the camera config, the query registry and the API
check names with it without importing the zones' geometry and their users)."""

ZONE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def unknown_zone_warnings(zones: list[str] | None, known: set[str] | frozenset[str] | None) -> list[str]:
    """A warning for each of ``zones`` that no camera has (``known``: the zone names the site's
    cameras have; None: not known, nothing to say). Such a zone is accepted (an operator may draw it
    next), but until a camera has it the query is sampled nowhere on any camera."""
    if not zones or known is None:
        return []
    return [
        f"zone {name!r} is on no camera yet: the query is not sampled until a camera has a zone "
        "of that name (draw it on the Live page or add it under cameras[].zones)"
        for name in sorted(set(zones) - known)
    ]
