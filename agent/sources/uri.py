"""Camera URIs parsed into what a pipeline needs: the kind of source, its URI and its parameters.

Accepted forms: a plain path or ``file://`` URI (a video file), ``rtsp://`` (also ``rtsps``,
``rtspt``, ``rtspu``), ``http(s)://`` (MJPEG streams, HLS playlists), ``v4l2:///dev/videoN`` or a
plain ``/dev/videoN`` path (USB cameras), and ``test://?pattern=ball&width=640&height=480&fps=15``
(GStreamer's ``videotestsrc``, live).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from agent.redact import redact_text
from agent.sources.base import SourceError

SourceKind = Literal["file", "rtsp", "http", "v4l2", "test"]

_SCHEMES: dict[str, SourceKind] = {
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
_TEST_KEYS = ("pattern", "width", "height", "fps")


@dataclass(frozen=True)
class TestPattern:
    """Parameters of a ``test://`` source: a ``videotestsrc`` pattern nick, size in pixels, frames/s."""

    __test__ = False  # not a pytest test class

    pattern: str = "smpte"
    width: int = 640
    height: int = 480
    fps: Fraction = Fraction(15)


@dataclass(frozen=True)
class SourceSpec:
    """What to build for one camera URI.

    Attributes:
        kind: file, rtsp, http, v4l2 or test.
        uri: the URI handed to GStreamer (a plain path becomes an absolute ``file://`` URI);
            empty for test sources.
        is_live: live sources reconnect and drop frames; files block and end.
        path: the local file of a file source.
        test: the parameters of a test source.
    """

    kind: SourceKind
    uri: str
    is_live: bool
    path: Path | None = None
    test: TestPattern | None = None


def redact_uri(uri: str) -> str:
    """``uri`` with its password (user info or a secret query parameter) replaced by ``***``, for
    logs and error messages (:func:`agent.redact.redact_text`)."""
    return redact_text(uri)


def _positive(value: str, key: str, uri: str, kind: type[int] | type[Fraction]) -> int | Fraction:
    try:
        number = kind(value)
    except (ValueError, ZeroDivisionError):
        raise SourceError(f"{uri}: {key}={value!r} is not a number") from None
    if number <= 0:
        raise SourceError(f"{uri}: {key} must be positive, got {value}")
    return number


def _parse_test(uri: str, query: str) -> TestPattern:
    values: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _TEST_KEYS:
            raise SourceError(f"{uri}: unknown test:// parameter {key!r} (expected {', '.join(_TEST_KEYS)})")
        values[key] = value
    default = TestPattern()
    width = int(_positive(values.get("width", str(default.width)), "width", uri, int))
    height = int(_positive(values.get("height", str(default.height)), "height", uri, int))
    if width > 8192 or height > 8192:
        raise SourceError(f"{uri}: test pattern size {width}x{height} is larger than 8192 pixels")
    fps = Fraction(_positive(values.get("fps", str(default.fps)), "fps", uri, Fraction))
    return TestPattern(
        pattern=values.get("pattern", default.pattern) or default.pattern,
        width=width,
        height=height,
        fps=fps.limit_denominator(1001),
    )


def parse_source_uri(uri: str) -> SourceSpec:
    """Classify a camera URI; raise :class:`SourceError` for an unsupported scheme or bad parameters.

    Whether a file exists is not checked here: a missing file is the source's runtime failure.
    """
    uri = uri.strip()
    if not uri:
        raise SourceError("empty camera URI")
    if "://" not in uri:
        path = Path(uri).expanduser().absolute()
        if str(path).startswith("/dev/video"):
            return SourceSpec(kind="v4l2", uri=f"v4l2://{path}", is_live=True)
        return SourceSpec(kind="file", uri=path.as_uri(), is_live=False, path=path)
    scheme = uri.split("://", 1)[0].lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        supported = "a file path, file://, rtsp://, http(s)://, v4l2:// or test://"
        raise SourceError(
            f"unsupported camera URI scheme {scheme!r} in {redact_uri(uri)} (expected {supported})"
        )
    parts = urlsplit(uri)
    if kind == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"{uri}: file:// URIs must name a local file (file:///path/to/video.mp4)")
        path = Path(unquote(parts.path))
        return SourceSpec(kind="file", uri=path.as_uri(), is_live=False, path=path)
    if kind == "test":
        return SourceSpec(kind="test", uri="", is_live=True, test=_parse_test(uri, parts.query))
    if kind == "v4l2":
        if not parts.path:
            raise SourceError(f"{uri}: expected a device path, for example v4l2:///dev/video0")
        return SourceSpec(kind="v4l2", uri=uri, is_live=True)
    if not parts.hostname:
        raise SourceError(f"{redact_uri(uri)}: no host name")
    return SourceSpec(kind=kind, uri=uri, is_live=True)
