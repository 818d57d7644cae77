"""Camera URI rules checked when the config loads (not first at run time): the scheme is one
Watchword reads, network URIs name a host, and the URI holds no blanks or control characters.

:mod:`agent.sources.uri` builds the pipeline from a URI at run time; this module only refuses
URIs no source could open, so that a typo stops ``watchword run`` at once with exit 2 and the
YAML line of the key. Error texts never show a password.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from agent.redact import redact_text

# scheme -> source kind (the same table the sources use)
SCHEMES: dict[str, str] = {
    "file": "file",
    "rtsp": "rtsp",
    "rtsps": "rtsp",
    "rtspt": "rtsp",
    "rtspu": "rtsp",
    "http": "http",
    "https": "http",
    "v4l2": "v4l2",
    "test": "test",
}
TEST_KEYS = ("pattern", "width", "height", "fps")
SUPPORTED = "a file path, file://, rtsp://, http(s)://, v4l2:// or test://"


def camera_uri_problem(uri: str) -> str | None:
    """Why no source could open ``uri``, or None when it looks usable."""
    shown = redact_text(uri)
    if not uri.strip():
        return "empty camera URI"
    if uri != uri.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in uri):
        return f"camera URI {shown!r} has blanks or control characters (percent-encode them)"
    if "://" not in uri:
        # A plain file or device path; whether it exists is the source's business, but a ``~user``
        # that names no user cannot even be expanded.
        try:
            Path(uri).expanduser()
        except RuntimeError as exc:
            return f"camera path {shown!r}: {exc}"
        return None
    scheme = uri.split("://", 1)[0].lower()
    kind = SCHEMES.get(scheme)
    if kind is None:
        return f"unsupported camera URI scheme {scheme!r} in {shown} (expected {SUPPORTED})"
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises for a port that is not a number in range
    except ValueError as exc:
        return f"camera URI {shown} is malformed: {exc}"
    if kind in {"rtsp", "http"} and not parts.hostname:
        return f"camera URI {shown} names no host"
    if kind == "file" and parts.netloc not in ("", "localhost"):
        return f"{shown}: file:// URIs must name a local file (file:///path/to/video.mp4)"
    if kind == "file" and not parts.path:
        return f"{shown}: file:// URI without a path"
    if kind == "v4l2" and not parts.path:
        return f"{shown}: expected a device path, for example v4l2:///dev/video0"
    if kind == "test":
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key not in TEST_KEYS:
                return f"{shown}: unknown test:// parameter {key!r} (expected {', '.join(TEST_KEYS)})"
            if key != "pattern" and not _positive_number(value):
                return f"{shown}: {key}={value!r} is not a positive number"
    del port
    return None


def missing_file_problem(uri: str) -> str | None:
    """For a file camera (a path or ``file://``) whose file does not exist: why; else None.

    Device paths (``/dev/video0``) are not checked: a USB camera may be plugged in later, and a live
    source keeps trying.
    """
    if "://" not in uri:
        try:
            path = Path(uri).expanduser()
        except RuntimeError:
            return None  # camera_uri_problem says why
        if str(path.absolute()).startswith("/dev/video"):
            return None
    elif uri.split("://", 1)[0].lower() == "file":
        path = Path(unquote(urlsplit(uri).path))
    else:
        return None
    if path.is_file():
        return None
    what = "is not a file" if path.exists() else "not found"
    return f"file camera: video file {what}: {redact_text(str(path))}"


def _positive_number(text: str) -> bool:
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            return float(numerator) > 0 and float(denominator) > 0
        return float(text) > 0
    except ValueError:
        return False
