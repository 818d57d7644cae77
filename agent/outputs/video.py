"""Annotated MP4 per camera, encoded by GStreamer (H.264 through openh264enc, else VP8 in WebM)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.types import Detections, Frame

log = logging.getLogger(__name__)

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]


def annotate(frame: Frame, tracks: Detections) -> np.ndarray:
    """A copy of the frame with each track's box and id drawn on it."""
    image = frame.image.copy()
    ids = tracks.tracker_id if tracks.tracker_id is not None else np.full(len(tracks), -1)
    for track_id, box, score in zip(ids, tracks.xyxy, tracks.confidence, strict=True):
        color = _PALETTE[int(track_id) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
        label = f"#{int(track_id)} {float(score):.2f}"
        cv2.putText(
            image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA
        )
    cv2.putText(
        image, f"{frame.camera_id} #{frame.index}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1
    )
    return image


def _gst() -> Any:
    from agent.gst import protect_unwinder

    protect_unwinder()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    return Gst


class VideoWriter:
    """Writes BGR frames of one size to a video file through an ``appsrc`` pipeline.

    Frames of another size (a camera that came back at another resolution) are scaled to the first
    frame's size. ``close()`` sends end-of-stream and waits, so the file is playable. ``webm``: VP8 in
    WebM even where H.264 is available (what every browser plays).
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, *, webm: bool = False) -> None:
        gst = _gst()
        self.width, self.height = width, height
        self.fps = max(1.0, fps)
        self.frames = 0
        h264 = not webm and gst.ElementFactory.find("openh264enc") is not None
        encoder = "openh264enc ! h264parse ! mp4mux" if h264 else None
        if encoder is None:
            path = path.with_suffix(".webm")
            encoder = "vp8enc deadline=1 ! webmmux"
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        caps = f"video/x-raw,format=BGR,width={width},height={height},framerate={round(self.fps * 1000)}/1000"
        description = (
            f'appsrc name=src is-live=false format=time caps="{caps}" ! videoconvert ! '
            f'video/x-raw,format=I420 ! {encoder} ! filesink location="{path}"'
        )
        self._gst = gst
        self._pipeline = gst.parse_launch(description)
        self._src = self._pipeline.get_by_name("src")
        self._pipeline.set_state(gst.State.PLAYING)

    def write(self, image: np.ndarray) -> None:
        gst = self._gst
        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        buffer = gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
        duration = int(gst.SECOND / self.fps)
        buffer.pts = self.frames * duration
        buffer.duration = duration
        self.frames += 1
        result = self._src.emit("push-buffer", buffer)
        if result != gst.FlowReturn.OK:
            log.warning("video writer %s: push returned %s", self.path, result)

    def close(self, timeout_s: float = 5.0) -> None:
        gst = self._gst
        if self._pipeline is None:
            return
        self._src.emit("end-of-stream")
        bus = self._pipeline.get_bus()
        message = bus.timed_pop_filtered(
            int(timeout_s * gst.SECOND), gst.MessageType.EOS | gst.MessageType.ERROR
        )
        if message is None:
            log.warning("video writer %s: no end-of-stream within %.1f s", self.path, timeout_s)
        elif message.type == gst.MessageType.ERROR:
            error, _ = message.parse_error()
            log.error("video writer %s: %s", self.path, error.message)
        self._pipeline.set_state(gst.State.NULL)
        self._pipeline = None
