"""Camera sources: GStreamer pipelines that deliver BGR frames at each camera's analysis rate and size.

Use :func:`open_source` to build the source for a :class:`~agent.sources.config.CameraConfig`, then
``start()``, ``read(timeout_s)`` until ``finished``, and ``stop(timeout_s)``. The names of
:mod:`agent.sources.base` load on first use, so that ``agent.config`` can nest
:mod:`agent.sources.config` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.lazy_exports import lazy_exports
from agent.sources.config import CameraConfig

if TYPE_CHECKING:
    from agent.sources.base import Source, SourceError, SourceState, SourceStats

__getattr__ = lazy_exports(
    __name__, {name: "agent.sources.base" for name in ("Source", "SourceError", "SourceState", "SourceStats")}
)

__all__ = ["Source", "SourceError", "SourceState", "SourceStats", "open_source"]


def open_source(camera: CameraConfig) -> Source:
    """Build (not start) the source for ``camera``.

    Raises :class:`SourceError` for an unsupported URI scheme, bad ``test://`` parameters, or
    when GStreamer is not installed. A missing or unreadable file is not an error here: the
    source starts, fails, and reports it in its stats.
    """
    from agent.sources.base import SourceError
    from agent.sources.uri import parse_source_uri

    try:
        spec = parse_source_uri(camera.uri)
        from agent.sources.gst_source import GstSource

        return GstSource(camera, spec)
    except SourceError as exc:
        raise SourceError(f"camera {camera.id!r}: {exc}") from exc
