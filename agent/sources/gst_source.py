"""The GStreamer source: one worker thread per camera that runs, watches and restarts its pipeline.

The worker polls its own pipeline (appsink pulls and bus messages with short timeouts), so no GLib
main loop is needed. Live sources reconnect with capped exponential backoff after an error, an end
of stream or a stall, and drop the oldest queued frame when the reader falls behind. File sources
block until the reader makes room, then end, loop, or fail with a message naming camera and URI.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent.sources.base import Source, SourceState, SourceStats
from agent.sources.config import CameraConfig, ReconnectConfig
from agent.sources.decoders import DecoderPlan, DecoderUnavailableError, plan_decoding
from agent.sources.pipeline import CameraPipeline, ensure_gst
from agent.sources.queue import BlockingQueue, DropOldestQueue
from agent.sources.stats import SourceCounters
from agent.sources.uri import SourceSpec, redact_uri
from agent.types import Frame

logger = logging.getLogger(__name__)

_PULL_TIMEOUT_S = 0.05
# rtspsrc can hang for good in its teardown after a server dropped the connection (seen with
# gst-rtsp-server killed mid-stream): a pipeline not stopped within this is left behind, so that the
# camera still reconnects, and shutdown stays bounded.
_PIPELINE_CLOSE_TIMEOUT_S = 2.0


class Backoff:
    """Capped exponential delays in seconds: ``initial_s``, then times ``factor``, at most ``max_s``."""

    def __init__(self, config: ReconnectConfig) -> None:
        self.config = config
        self._next_s = config.initial_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self.config.max_s, delay * self.config.factor)
        return delay

    def reset(self) -> None:
        self._next_s = self.config.initial_s


@dataclass(frozen=True)
class _Outcome:
    """How one pipeline run ended, and how many frames it delivered."""

    kind: Literal["stopped", "eos", "error", "stall", "restart"]
    message: str = ""
    frames: int = 0


class GstSource(Source):
    """A camera read through a GStreamer pipeline in its own daemon thread."""

    def __init__(self, camera: CameraConfig, spec: SourceSpec) -> None:
        ensure_gst()
        self.camera = camera
        self.spec = spec
        self.is_live = spec.is_live
        self.label = f"camera {camera.id!r} ({redact_uri(camera.uri)})"
        analysis = camera.analysis_fps
        # A slow analysis rate must not look like a stall: allow three analysis periods at least.
        min_gap_s = 3.0 / analysis if analysis else 0.0
        self._stall_s = max(camera.stall_timeout_s, min_gap_s)
        self._connect_s = max(camera.connect_timeout_s, min_gap_s)
        self._counters = SourceCounters(camera.id, fps_window_s=max(5.0, min_gap_s))
        self._queue: DropOldestQueue[Frame] | BlockingQueue[Frame] = (
            DropOldestQueue(camera.queue_size) if spec.is_live else BlockingQueue(camera.queue_size)
        )
        self._stop = threading.Event()
        self._done = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next_index = 0
        self._pts_offset_s = 0.0
        self._last_raw_pts_s: float | None = None
        self._native_fps: float | None = None
        self._decoding: DecoderPlan | None = None  # resolved on the worker at the first pipeline
        if spec.kind == "test":
            CameraPipeline(camera, spec)  # raises SourceError now for a bad test pattern

    # --- public interface -----------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread; calling it again, or after :meth:`stop`, does nothing."""
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=f"source-{self.camera.id}", daemon=True)
            self._thread.start()

    def read(self, timeout_s: float) -> Frame | None:
        return self._queue.get(timeout_s)

    @property
    def finished(self) -> bool:
        return self._done.is_set() and len(self._queue) == 0

    def stats(self) -> SourceStats:
        return self._counters.snapshot(queued=len(self._queue))

    def stop(self, timeout_s: float = 3.0) -> None:
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._queue.close()  # wakes a producer waiting for room, and any reader
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "%s: worker did not stop within %.1f s; leaving its daemon thread behind",
                    self.label,
                    timeout_s,
                )
        self._counters.set_state(SourceState.STOPPED)
        self._done.set()

    @property
    def native_fps(self) -> float | None:
        return self._native_fps

    # --- worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self.camera.reconnect)
        try:
            while not self._stop.is_set():
                outcome = self._run_pipeline()
                if outcome.kind == "stopped":
                    break
                if self._fall_back_to_software(outcome):
                    continue
                if outcome.kind == "restart":
                    continue
                if not self.is_live:
                    if outcome.kind == "eos":
                        logger.info("%s: ended after %d frames", self.label, self._next_index)
                        self._counters.set_state(SourceState.ENDED)
                    else:
                        error = f"{self.label}: {outcome.message}"
                        logger.error("%s", error)
                        self._counters.set_state(SourceState.FAILED, error)
                    break
                if outcome.frames:
                    backoff.reset()
                delay = backoff.next_delay()
                error = f"{self.label}: {outcome.message}"
                self._counters.reconnecting(error)
                logger.warning("%s; reconnecting in %.1f s", error, delay)
                if self._stop.wait(delay):
                    break
        except Exception as exc:  # a bug or a broken install must not die silently
            error = f"{self.label}: {type(exc).__name__}: {exc}"
            logger.exception("%s", error)
            self._counters.set_state(SourceState.FAILED, error)
        finally:
            self._queue.close()
            self._done.set()

    def _run_pipeline(self) -> _Outcome:
        """Build, play and drain one pipeline until it ends, fails, stalls or the source stops."""
        if self.spec.path is not None and not self.spec.path.is_file():
            return _Outcome("error", f"file not found: {self.spec.path}")
        if self._decoding is None and self.spec.kind != "test":
            try:
                self._decoding = plan_decoding(self.camera.decode, self.camera.id)
            except DecoderUnavailableError as exc:
                return _Outcome("error", str(exc))
        pipeline = CameraPipeline(self.camera, self.spec, self._decoding)
        outcome = _Outcome("stopped")
        try:
            outcome = self._drain(pipeline)
            return outcome
        finally:
            if self.is_live and outcome.frames and outcome.kind in {"error", "stall", "eos"}:
                # Say so before closing: rtspsrc's teardown towards a dead server can block for
                # many seconds, and meanwhile the camera must not look "running" in /health.
                self._counters.set_state(SourceState.RECONNECTING, f"{self.label}: {outcome.message}")
            self._close(pipeline)

    def _close(self, pipeline: CameraPipeline) -> None:
        """Stop a pipeline within ``_PIPELINE_CLOSE_TIMEOUT_S``, or leave it behind with a warning."""
        closer = threading.Thread(target=pipeline.close, name=f"close-{self.camera.id}", daemon=True)
        closer.start()
        closer.join(_PIPELINE_CLOSE_TIMEOUT_S)
        if closer.is_alive():
            logger.warning(
                "%s: the old pipeline did not stop within %.1f s (GStreamer is stuck in its teardown); "
                "leaving it behind",
                self.label,
                _PIPELINE_CLOSE_TIMEOUT_S,
            )

    def _fall_back_to_software(self, outcome: _Outcome) -> bool:
        """After ``decode: auto`` chose hardware and that pipeline failed before any frame: use software."""
        plan = self._decoding
        if plan is None or not plan.hardware or plan.requested != "auto":
            return False
        if outcome.kind != "error" or outcome.frames > 0:
            return False
        logger.warning(
            "%s: hardware decoding (%s) failed to start: %s; falling back to software decoding",
            self.label,
            plan.family,
            outcome.message,
        )
        self._decoding = DecoderPlan(plan.requested, "software")
        return True

    def _drain(self, pipeline: CameraPipeline) -> _Outcome:
        error = pipeline.play()
        if error is not None:
            return _Outcome("error", error)
        frames = 0
        frames_at_rewind = 0
        started = last_frame = time.monotonic()
        while not self._stop.is_set():
            pulled = pipeline.pull(_PULL_TIMEOUT_S)
            if pulled is not None:
                self._native_fps = pipeline.native_fps
                if not self._deliver(*pulled):
                    break
                frames += 1
                last_frame = time.monotonic()
                if frames == 1:
                    self._first_frame()
            for event in pipeline.poll_bus():
                if event.kind == "error":
                    return _Outcome("error", event.message, frames)
                if not pipeline.video_linked:
                    return _Outcome("error", "the stream has no video", frames)
                if self.is_live or not self.camera.loop:
                    return _Outcome("eos", "end of stream", frames)
                if frames == frames_at_rewind:
                    return _Outcome("error", "no frames before the end of the file; cannot loop", frames)
                frames_at_rewind = frames
                self._advance_pts_for_loop()
                logger.debug("%s: looping to the start", self.label)
                if not pipeline.rewind():
                    return _Outcome("restart", frames=frames)
            if self.is_live:
                now = time.monotonic()
                if frames == 0 and now - started > self._connect_s:
                    return _Outcome("stall", f"no frame within {self._connect_s:.1f} s of connecting")
                if frames and now - last_frame > self._stall_s:
                    return _Outcome("stall", f"no frame for {now - last_frame:.1f} s", frames)
        return _Outcome("stopped", frames=frames)

    def _first_frame(self) -> None:
        stats = self._counters.snapshot()
        if stats.state == SourceState.RECONNECTING:
            logger.info("%s: frames flowing again (reconnects so far: %d)", self.label, stats.reconnects)
        else:
            logger.info("%s: first frame", self.label)
        self._counters.set_state(SourceState.RUNNING)

    def _deliver(self, image: np.ndarray, raw_pts_s: float | None) -> bool:
        """Queue one frame; False when the source stopped (before or while waiting for room)."""
        if self._stop.is_set():
            return False
        pts_s = None
        if raw_pts_s is not None:
            self._last_raw_pts_s = raw_pts_s
            pts_s = raw_pts_s + self._pts_offset_s
        frame = Frame(
            camera_id=self.camera.id,
            index=self._next_index,
            pts_s=pts_s,
            wall_time=time.time(),
            image=image,
            live=self.is_live,
        )
        if isinstance(self._queue, DropOldestQueue):
            dropped = self._queue.put(frame)
            if dropped:
                self._counters.dropped(dropped)
        elif not self._queue.put(frame, self._stop):
            return False
        self._next_index += 1
        self._counters.frame_delivered(frame.width, frame.height)
        return True

    def _advance_pts_for_loop(self) -> None:
        """Keep timestamps increasing across loops: the next pass starts one frame after this one."""
        period_s = 1.0 / self._native_fps if self._native_fps else 0.0
        self._pts_offset_s += (self._last_raw_pts_s or 0.0) + period_s
        self._last_raw_pts_s = None
