"""Short clips around alerts: the seconds before and after an alert, from the analysed frames.

:class:`ClipRecorder` keeps a bounded ring of each camera's recent analysed frames (scaled down on
arrival, so the ring's memory is bounded by ``max_frames`` small images per camera) and, when an alert
opens, a worker thread waits until ``after_s`` of media time have passed on that camera, then
encodes the frames from ``before_s`` before to ``after_s`` after the alert into
``<evidence_dir>/<alert_id>/clip.webm`` (VP8 in WebM, which browsers play), with the alert's box
drawn. Encoding never runs on the video or analysis thread: they only append to the ring. The clip
lives in the alert's evidence bundle, so retention prunes it with the rest of the bundle and the
folder's byte cap counts it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.types import FrameResult

log = logging.getLogger(__name__)

CLIP_FILE = "clip.webm"
BOX_COLOR_BGR = (0, 0, 255)


@dataclass
class _Shot:
    """One analysed frame in the ring: media time (s), the scaled image, and each track's box in it."""

    media_time: float
    image: np.ndarray
    boxes: dict[int, tuple[int, int, int, int]]


@dataclass
class _Request:
    alert_id: str
    camera: str
    track_id: int | None
    label: str
    fired_s: float
    asked_at: float = field(default_factory=time.monotonic)


@dataclass
class ClipStats:
    written: int = 0
    failed: int = 0
    skipped: int = 0


class ClipRecorder:
    """Per-camera rings of recent frames and the worker that turns them into alert clips.

    Args:
        evidence_dir: the alerts' evidence folder (a clip goes into ``<alert_id>/``; an alert
            without a bundle folder gets no clip).
        before_s: seconds of video before the alert, media time.
        after_s: seconds after it, media time.
        max_width: frames are scaled down to this width on arrival, pixels.
        max_frames: frames kept per camera (bounds the ring's memory).
        wait_s: the most a clip waits for its ``after_s`` (a camera that stopped), wall seconds.
    """

    def __init__(
        self,
        evidence_dir: Path,
        *,
        before_s: float = 4.0,
        after_s: float = 4.0,
        max_width: int = 480,
        max_frames: int = 200,
        wait_s: float = 30.0,
    ) -> None:
        self.evidence_dir = evidence_dir
        self.before_s = before_s
        self.after_s = after_s
        self.max_width = max_width
        self.max_frames = max_frames
        self.wait_s = wait_s
        self.stats = ClipStats()
        self._rings: dict[str, deque[_Shot]] = {}
        self._lock = threading.Lock()
        self._requests: queue.Queue[_Request | None] = queue.Queue(maxsize=256)
        self._pending: list[_Request] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-clips", daemon=True)
        self._thread.start()

    # --- the analysis thread: append only ------------------------------------------------------

    def process(self, results: list[FrameResult]) -> None:
        """Keep each result's frame, scaled down, with its tracks' boxes (called per analysed batch)."""
        for result in results:
            frame = result.frame
            if result.extra.get("camera_ended"):  # a changed camera: its old frames are not its new ones
                self.forget(frame.camera_id)
                continue
            image = frame.image
            scale = min(1.0, self.max_width / image.shape[1])
            if scale < 1.0:
                size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            tracks = result.tracks
            boxes: dict[int, tuple[int, int, int, int]] = {}
            if tracks.tracker_id is not None:
                for track_id, box in zip(tracks.tracker_id, tracks.xyxy, strict=True):
                    x1, y1, x2, y2 = (round(float(v) * scale) for v in box)
                    boxes[int(track_id)] = (x1, y1, x2, y2)
            shot = _Shot(frame.media_time, image, boxes)
            with self._lock:
                ring = self._rings.get(frame.camera_id)
                if ring is None:
                    ring = self._rings[frame.camera_id] = deque(maxlen=self.max_frames)
                if ring and shot.media_time < ring[-1].media_time:  # a file camera looped: new clock
                    ring.clear()
                ring.append(shot)

    def forget(self, camera_id: str) -> None:
        with self._lock:
            self._rings.pop(camera_id, None)

    # --- the alerts: ask for a clip --------------------------------------------------------------

    def request(self, payload: dict[str, Any]) -> None:
        """Ask for the clip of an alert event's payload; only an opening event with evidence asks."""
        if payload.get("event") != "opened" or not payload.get("evidence"):
            return
        media = payload.get("media") or {}
        fired = media.get("started_s")
        if not isinstance(fired, int | float) or not isinstance(payload.get("alert_id"), str):
            return
        track = payload.get("track_id")
        request = _Request(
            alert_id=payload["alert_id"],
            camera=str(payload.get("camera")),
            track_id=track if isinstance(track, int) else None,
            label=f"#{track} {str(payload.get('query') or '')[:32]}",
            fired_s=float(fired),
        )
        try:
            self._requests.put_nowait(request)
        except queue.Full:
            self.stats.skipped += 1
            log.warning("alert %s: no clip, too many clips waiting", request.alert_id)

    def close(self) -> None:
        """Stop the worker; clips still waiting are written with the frames there are."""
        self._closed.set()
        self._requests.put(None)
        self._thread.join(10.0)

    # --- the worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._requests.get(timeout=0.2)
            except queue.Empty:
                item = None
            else:
                if item is None and self._closed.is_set():
                    for request in self._pending:
                        self._write(request)
                    self._pending.clear()
                    return
            if item is not None:
                self._pending.append(item)
            still: list[_Request] = []
            for request in self._pending:
                if self._ready(request):
                    self._write(request)
                else:
                    still.append(request)
            self._pending = still

    def _ready(self, request: _Request) -> bool:
        with self._lock:
            ring = self._rings.get(request.camera)
            newest = ring[-1].media_time if ring else None
        if newest is not None and newest >= request.fired_s + self.after_s:
            return True
        return time.monotonic() - request.asked_at > self.wait_s

    def _shots(self, request: _Request) -> list[_Shot]:
        start, end = request.fired_s - self.before_s, request.fired_s + self.after_s
        with self._lock:
            ring = list(self._rings.get(request.camera, ()))
        return [shot for shot in ring if start <= shot.media_time <= end]

    def _write(self, request: _Request) -> None:
        folder = self.evidence_dir / request.alert_id
        shots = self._shots(request)
        if len(shots) < 2 or not folder.is_dir():
            self.stats.skipped += 1
            log.info("alert %s: no clip (%d frames around it)", request.alert_id, len(shots))
            return
        from agent.outputs.video import VideoWriter

        span = max(1e-3, shots[-1].media_time - shots[0].media_time)
        fps = max(1.0, (len(shots) - 1) / span)
        height, width = shots[0].image.shape[:2]
        partial = folder / ".clip-partial.webm"
        try:
            writer = VideoWriter(partial, width - width % 2, height - height % 2, fps, webm=True)
            for shot in shots:
                writer.write(self._drawn(shot, request))
            writer.close()
            os.replace(writer.path, folder / CLIP_FILE)
        except Exception as exc:  # an encoder that fails costs the clip, never the alert
            self.stats.failed += 1
            log.error("alert %s: clip not written: %s", request.alert_id, exc)
            partial.unlink(missing_ok=True)
            return
        self.stats.written += 1
        log.info("alert %s: clip of %d frames (%.1f s)", request.alert_id, len(shots), span)

    @staticmethod
    def _drawn(shot: _Shot, request: _Request) -> np.ndarray:
        image = shot.image.copy()
        box = shot.boxes.get(request.track_id) if request.track_id is not None else None
        if box is not None:
            x1, y1, x2, y2 = box
            cv2.rectangle(image, (x1, y1), (x2, y2), BOX_COLOR_BGR, 2)
            inside = (x1 + 3, min(y2 - 4, y1 + 14))  # the label inside the box: never cut by the edge
            cv2.putText(
                image, request.label, inside, cv2.FONT_HERSHEY_SIMPLEX, 0.4, BOX_COLOR_BGR, 1, cv2.LINE_AA
            )
        seconds = shot.media_time - request.fired_s
        cv2.putText(
            image,
            f"{seconds:+.1f} s",
            (6, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        return image
