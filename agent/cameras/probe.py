"""'Test connection': open a camera URI once and return a snapshot or the error."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2

from agent.redact import redact_text
from agent.sources import SourceError, open_source
from agent.sources.config import CameraConfig
from agent.sources.uri import redact_uri


@dataclass
class ProbeResult:
    """A JPEG snapshot (``jpeg``) or why there is none (``error``, credentials redacted)."""

    ok: bool
    jpeg: bytes | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    seconds: float = 0.0


def probe_camera(camera: CameraConfig, timeout_s: float = 8.0) -> ProbeResult:
    """Open ``camera``'s URI, wait up to ``timeout_s`` for one frame, stop it again."""
    started = time.monotonic()
    try:
        source = open_source(camera)
    except SourceError as exc:
        return ProbeResult(False, error=_clean(str(exc), camera.uri), seconds=time.monotonic() - started)
    source.start()
    try:
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            frame = source.read(timeout_s=0.1)
            if frame is not None:
                ok, encoded = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
                if not ok:
                    break
                return ProbeResult(
                    True, encoded.tobytes(), frame.width, frame.height, seconds=time.monotonic() - started
                )
            stats = source.stats()
            if source.finished or stats.state.is_final:
                return ProbeResult(
                    False,
                    error=_clean(stats.last_error or "the source ended without a frame", camera.uri),
                    seconds=time.monotonic() - started,
                )
        error = source.stats().last_error or f"no frame within {timeout_s:g} s"
        return ProbeResult(False, error=_clean(error, camera.uri), seconds=time.monotonic() - started)
    finally:
        source.stop(timeout_s=2.0)


def _clean(message: str, uri: str) -> str:
    """``message`` without the URI's credentials, also where it quotes them apart from the URI."""
    return redact_text(message.replace(uri, redact_uri(uri)))
