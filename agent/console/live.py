"""The live view: each camera's latest analysed frame, drawn and JPEG-encoded only when asked for.

An analyser after the matcher keeps a reference to each camera's latest frame, its tracks and their
pooled scores (no copy, no encoding). A viewer's request draws the boxes, track ids and each track's
best query score and encodes one JPEG; viewers asking for the same frame share it, so the cost follows
the number of frames watched, not the number analysed, and nothing is encoded when nobody watches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import cv2
import numpy as np

from agent.types import FrameResult

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]


@dataclass
class LiveJpeg:
    """One encoded frame of a camera: its index and UNIX time, and the JPEG bytes."""

    camera_id: str
    index: int
    wall_time: float
    jpeg: bytes


class LiveFrames:
    """Analyser keeping each camera's latest result; :meth:`jpeg` draws and encodes on demand.

    Args:
        query_names: query id -> short text, for the labels (called when a frame is drawn).
        max_width: frames wider than this are scaled down before encoding, pixels.
    """

    def __init__(self, query_names: Callable[[], dict[str, str]], max_width: int = 960) -> None:
        self.query_names = query_names
        self.max_width = max_width
        self._latest: dict[str, FrameResult] = {}
        self._encoded: dict[str, LiveJpeg] = {}
        self._lock = threading.Lock()
        self.encoded_frames = 0
        self.listeners: list[Callable[[list[FrameResult]], None]] = []

    def process(self, results: list[FrameResult]) -> None:
        for result in results:
            if result.extra.get("camera_ended"):  # the record that ends a changed camera: no pixels
                self.forget(result.frame.camera_id)
                continue
            with self._lock:
                self._latest[result.frame.camera_id] = result
        for listener in self.listeners:  # the alert clips' ring: an append per frame
            listener(results)

    def forget(self, camera_id: str) -> None:
        with self._lock:
            self._latest.pop(camera_id, None)
            self._encoded.pop(camera_id, None)

    def jpeg(self, camera_id: str) -> LiveJpeg | None:
        """The camera's latest analysed frame as a drawn JPEG; None before its first frame."""
        with self._lock:
            result = self._latest.get(camera_id)
            cached = self._encoded.get(camera_id)
        if result is None:
            return None
        if cached is not None and cached.index == result.frame.index:
            return cached
        image = self._draw(result)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if not ok:
            return None
        live = LiveJpeg(camera_id, result.frame.index, result.frame.wall_time, encoded.tobytes())
        with self._lock:
            self._encoded[camera_id] = live
            self.encoded_frames += 1
        return live

    def _draw(self, result: FrameResult) -> np.ndarray:
        image = result.frame.image.copy()
        scores = result.extra.get("scores", {})
        names = self.query_names() if scores else {}
        tracks = result.tracks
        ids = tracks.tracker_id if tracks.tracker_id is not None else np.full(len(tracks), -1)
        for track_id, box in zip(ids, tracks.xyxy, strict=True):
            color = _PALETTE[int(track_id) % len(_PALETTE)]
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
            label = f"#{int(track_id)}"
            per_query = scores.get(str(int(track_id)))
            if per_query:
                best_query, best = max(per_query.items(), key=lambda item: item[1])
                label += f" {names.get(best_query, 'q' + best_query)[:24]} {best:.2f}"
            cv2.putText(
                image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA
            )
        if image.shape[1] > self.max_width:
            scale = self.max_width / image.shape[1]
            image = cv2.resize(image, (self.max_width, round(image.shape[0] * scale)))
        return image


MJPEG_BOUNDARY = "watchwordframe"


async def mjpeg_stream(
    live: LiveFrames,
    camera_id: str,
    fps: float,
    closed: Callable[[], bool],
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """``multipart/x-mixed-replace`` parts: each new analysed frame of the camera, at most ``fps``
    a second, until the client leaves or ``closed()`` (the agent stops)."""
    interval = 1.0 / fps
    last_index: int | None = None
    while not closed():
        started = time.monotonic()
        frame = await asyncio.to_thread(live.jpeg, camera_id)
        if frame is not None and frame.index != last_index:
            last_index = frame.index
            head = (
                f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
                f"X-Frame-Index: {frame.index}\r\n\r\n"
            )
            yield head.encode() + frame.jpeg + b"\r\n"
        if await disconnected():
            return
        await asyncio.sleep(max(0.02, interval - (time.monotonic() - started)))
