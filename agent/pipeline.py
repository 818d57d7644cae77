"""The runner: cameras -> batched detection -> per-camera tracking -> outputs.

Each camera's GStreamer source decodes in its own thread into a bounded queue. The runner's loop
takes at most one frame per camera per batch (fair across cameras, in order within a camera), runs
the detector on the batch, updates each camera's tracker, and writes the outputs. A camera that fails
or ends never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.api.metrics import Metric, stage_metrics
from agent.config import AgentConfig
from agent.detection import Detector
from agent.detection.base import PreparedBatch
from agent.detection.loader import DetectorLoader
from agent.outputs.jsonl import JsonlWriter, frame_record
from agent.outputs.video import VideoWriter, annotate
from agent.sources import Source, SourceError, SourceStats, open_source
from agent.sources.config import CameraConfig
from agent.sources.stats import RateMeter
from agent.tracking import CameraTracker, build_tracker
from agent.tracking.reassociation import Embedder
from agent.types import Detections, Frame, FrameResult, TrackEvent, TrackEventKind

log = logging.getLogger(__name__)

IDLE_SLEEP_S = 0.002
DEFAULT_FRAME_RATE = 25.0
ANALYSED_RATE_WINDOW_S = 5.0  # the source's delivered rate is measured over the same window
KEEP_UP_RATIO = 0.9
SOURCE_STOP_TIMEOUT_S = 2.0
ENDED_IMAGE = np.zeros((1, 1, 3), np.uint8)  # the pixels of a camera's ending record (it has none)


class Analyzer(Protocol):
    """A stage after tracking that sees each batch of analysed frames (all cameras together).

    It may add keys to ``FrameResult.extra``; they go into the frame's JSON line.
    """

    def process(self, results: list[FrameResult]) -> None: ...


@dataclass
class CameraCounters:
    """What the runner did with one camera's frames.

    ``analysed_fps`` is the rate frames were analysed at over the last few seconds, filled in by
    :meth:`snapshot` (the live counters keep the frame times instead).
    """

    camera_id: str
    frames: int = 0
    detections: int = 0
    active_tracks: int = 0
    tracks_seen: int = 0
    first_frame_wall: float | None = None
    last_frame_wall: float | None = None
    error: str | None = None
    analysed_fps: float = 0.0
    _rate: RateMeter = field(default_factory=lambda: RateMeter(ANALYSED_RATE_WINDOW_S), repr=False)

    @property
    def mean_fps(self) -> float:
        if self.frames < 2 or self.first_frame_wall is None or self.last_frame_wall is None:
            return 0.0
        span = self.last_frame_wall - self.first_frame_wall
        return (self.frames - 1) / span if span > 0 else 0.0

    def frame_analysed(self, now: float) -> None:
        """Count one analysed frame at ``now`` (monotonic seconds) for the analysed rate."""
        self._rate.add(now)

    def snapshot(self) -> CameraCounters:
        """A copy with ``analysed_fps`` measured now; it shares no state with the live counters."""
        fields = {k: v for k, v in vars(self).items() if k != "_rate"}
        return CameraCounters(**{**fields, "analysed_fps": self._rate.rate(time.monotonic())})


@dataclass
class CameraStatus:
    """A camera's source statistics together with the runner's counters."""

    source: SourceStats | None
    counters: CameraCounters

    def metrics(self) -> list[Metric]:
        """This camera's frames, drops, reconnects, detections, tracks and last frame age."""
        camera, counters, source = self.counters.camera_id, self.counters, self.source
        age = Metric("watchword_last_frame_age_seconds", "gauge", "Seconds since the camera's last frame")
        if source is not None and source.last_frame_age_s is not None:
            age.add(source.last_frame_age_s, camera=camera)
        return [
            Metric("watchword_frames_total", "counter", "Frames analysed per camera").add(
                counters.frames, camera=camera
            ),
            Metric("watchword_frame_drops_total", "counter", "Frames dropped by full camera queues").add(
                source.drops if source else 0, camera=camera
            ),
            Metric("watchword_reconnects_total", "counter", "Camera reconnects").add(
                source.reconnects if source else 0, camera=camera
            ),
            Metric("watchword_detections_total", "counter", "Detections per camera").add(
                counters.detections, camera=camera
            ),
            Metric("watchword_tracks_active", "gauge", "Tracks in the latest frame per camera").add(
                counters.active_tracks, camera=camera
            ),
            Metric("watchword_tracks_total", "counter", "Tracks started per camera").add(
                counters.tracks_seen, camera=camera
            ),
            age,
        ]

    def keep_up_problem(self) -> str | None:
        """Why this camera's frames are analysed slower than its source delivers them, or None.

        A live source drops the oldest frames the runner has not taken; when it has dropped frames
        and the analysed rate stays below ``KEEP_UP_RATIO`` of the delivered one, the agent cannot keep
        up. A file source waits for the runner, so it never falls behind.
        """
        source, counters = self.source, self.counters
        if source is None or source.state.value != "running" or not source.drops or source.fps <= 0:
            return None
        if counters.frames == 0 or counters.analysed_fps >= KEEP_UP_RATIO * source.fps:
            return None
        return (
            f"camera {counters.camera_id}: analysing {counters.analysed_fps:.1f} of {source.fps:.1f} "
            f"frames/s, {source.drops} dropped: the agent cannot keep up (lower analysis_fps, "
            "max_width/max_height or the number of cameras, or use a faster detector engine)"
        )


@dataclass
class RunSummary:
    cameras: list[CameraStatus] = field(default_factory=list)
    duration_s: float = 0.0
    stopped_by: str = "end of input"
    detect_seconds: float = 0.0
    detect_batches: int = 0

    @property
    def frames(self) -> int:
        return sum(c.counters.frames for c in self.cameras)


@dataclass
class _InFlight:
    """A batch between collection and tracking: its frames, their prepared input, the inference."""

    frames: list[Frame]
    prepared: PreparedBatch
    future: Future[tuple[Any, float]] | None = None
    raw: Any = None

    def result(self) -> tuple[Any, float]:
        assert self.future is not None
        return self.future.result()


class Pipeline:
    """Runs every enabled camera of a config until the input ends, a limit is hit or ``stop()``.

    Args:
        config: the validated agent config.
        jsonl_path: where to write one JSON line per analysed frame per camera (None: no file).
        video_dir: where to write one annotated video per camera (None: no video).
        max_frames: stop each camera after this many analysed frames (None: no limit).
        duration_s: stop the run after this many seconds (None: no limit).
        detector: a ready detector to use instead of building one from the config; the caller keeps
            it. Or a :class:`DetectorLoader` already building it (the pipeline then owns and closes
            it). None: the pipeline builds one at :meth:`run`, while its cameras open.
        on_frame: called after each analysed frame with its tracks and events (for extensions).
        analyzers: stages run on each batch after tracking (matching, alerts), in order.
        appearance_embedder: image embedder (CLIP) the trackers compare people with when
            re-associating, if ``tracker.reassociation.appearance`` is ``clip``; colour otherwise.
        keep_running: keep looping when no camera is left or all have ended (cameras can be added
            at run time with :meth:`add_camera`); only ``stop()`` or ``duration_s`` ends the run.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        jsonl_path: Path | None = None,
        video_dir: Path | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        detector: Detector | DetectorLoader | None = None,
        on_frame: Callable[[Frame, Detections, list[TrackEvent]], None] | None = None,
        analyzers: list[Analyzer] | None = None,
        appearance_embedder: Embedder | None = None,
        keep_running: bool = False,
    ) -> None:
        self.config = config
        self.appearance_embedder = appearance_embedder  # CLIP for tracker re-association (identity)
        self.keep_running = keep_running
        self._camera_changes: list[CameraConfig | str] = []  # added configs, removed ids
        self.jsonl_path = jsonl_path if jsonl_path is not None else config.output.jsonl
        self.video_dir = video_dir if video_dir is not None else config.output.video_dir
        self.max_frames = max_frames
        self.duration_s = duration_s
        self.on_frame = on_frame
        self.analyzers = list(analyzers or [])
        self.analyzer_errors = 0
        self._stop = threading.Event()
        self._stop_reason = "stopped"
        self._lock = threading.Lock()
        self._cameras = {c.id: c for c in config.enabled_cameras}
        self.counters: dict[str, CameraCounters] = {
            c.id: CameraCounters(c.id) for c in config.enabled_cameras
        }
        self.sources: dict[str, Source] = {}
        self.trackers: dict[str, CameraTracker] = {}
        # the next person id per camera: a camera changed at run time gets a new tracker whose ids
        # continue from the old one's, so an id names one person for the agent's lifetime
        self._next_track_id: dict[str, int] = {}
        self._last_frame: dict[str, Frame] = {}
        self.videos: dict[str, VideoWriter] = {}
        self._detector_loader = detector if isinstance(detector, DetectorLoader) else None
        self._detector = detector if isinstance(detector, Detector) else None
        self._owns_detector = self._detector is None
        self._jsonl: JsonlWriter | None = None
        self.detect_seconds = 0.0
        self.detect_batches = 0
        self._in_flight: dict[str, int] = {}  # frames per camera collected and not yet tracked

    # --- control ---------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Ask the loop to end; safe from signal handlers and other threads."""
        self._stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def engine_health(self) -> list[dict[str, Any]]:
        """The detector's engine state (empty before the detector is built)."""
        return [self._detector.health()] if self._detector is not None else []

    def status(self) -> list[CameraStatus]:
        """Per camera: source statistics and runner counters (thread-safe snapshot)."""
        with self._lock:
            result = []
            for camera_id, counters in self.counters.items():
                source = self.sources.get(camera_id)
                stats = source.stats() if source is not None else None
                result.append(CameraStatus(stats, counters.snapshot()))
            return result

    def metrics(self) -> list[Metric]:
        """Each camera's numbers (:meth:`CameraStatus.metrics`) and the detector's batches and time."""
        cameras = [metric for status in self.status() for metric in status.metrics()]
        return [*cameras, *stage_metrics("detect", self.detect_seconds, self.detect_batches)]

    # --- cameras at run time ----------------------------------------------------------------

    def add_camera(self, camera: CameraConfig) -> None:
        """Open ``camera`` (or replace the one with its id) before the loop's next batch."""
        with self._lock:
            self._camera_changes.append(camera)

    def remove_camera(self, camera_id: str) -> None:
        """Stop and forget a camera before the loop's next batch; the others keep running."""
        with self._lock:
            self._camera_changes.append(camera_id)

    def _apply_camera_changes(self, order: list[str]) -> list[str]:
        with self._lock:
            changes, self._camera_changes = self._camera_changes, []
        for change in changes:
            camera_id = change if isinstance(change, str) else change.id
            source = self.sources.pop(camera_id, None)
            if source is not None:  # stopped off the loop's thread: a stop can take seconds
                threading.Thread(target=self._stop_source, args=(camera_id, source), daemon=True).start()
            tracker = self.trackers.pop(camera_id, None)
            if tracker is not None:
                self._next_track_id[camera_id] = tracker.next_id
            self._end_camera(camera_id, tracker)
            with self._lock:
                self.counters.pop(camera_id, None)
                self._cameras.pop(camera_id, None)
            if isinstance(change, str):
                log.info("camera %s: removed", camera_id)
                continue
            with self._lock:
                self._cameras[camera_id] = change
                self.counters[camera_id] = CameraCounters(camera_id)
            self._open_source(change)
        return [c for c in order if c in self.sources] + [c for c in self.sources if c not in order]

    # --- run -------------------------------------------------------------------------------

    def _open_sources(self) -> None:
        for camera in self.config.enabled_cameras:
            self._open_source(camera)

    def _open_source(self, camera: CameraConfig) -> None:
        try:
            source = open_source(camera)
            source.start()
        except SourceError as exc:
            log.error("camera %s: %s", camera.id, exc)
            self.counters[camera.id].error = str(exc)
            return
        self.sources[camera.id] = source
        log.info("camera %s: opened %s", camera.id, camera.uri)

    def frame_rate_of(self, camera_id: str) -> float:
        """Frames/s a camera's frames arrive at: its analysis rate, or its stream's if that is lower."""
        source = self.sources.get(camera_id)
        native = source.native_fps if source is not None else None
        rates = [r for r in (self._cameras[camera_id].analysis_fps, native) if r]
        return min(rates) if rates else DEFAULT_FRAME_RATE

    def _end_camera(self, camera_id: str, tracker: CameraTracker | None) -> None:
        """A camera changed or removed: one last record ends every person it still had (``removed``
        events, ``camera_ended``), so the analysers and the decision core, live and in a replay of
        the records, close its episodes and drop its state."""
        last = self._last_frame.pop(camera_id, None)
        if last is None:
            return
        events = tracker.reset() if tracker is not None else []
        wall = max(time.time(), last.wall_time)
        frame = Frame(camera_id, last.index + 1, last.pts_s, wall, ENDED_IMAGE, last.live)
        result = FrameResult(frame, Detections.empty(), events, {"camera_ended": True})
        self._analyze([result])
        if self._jsonl is not None:
            self._emit(result)

    def _tracker_for(self, camera_id: str) -> CameraTracker:
        tracker = self.trackers.get(camera_id)
        if tracker is None:
            tracker = build_tracker(
                self.config.tracker,
                camera_id,
                frame_rate=self.frame_rate_of(camera_id),
                first_id=self._next_track_id.get(camera_id, 1),
            )
            if self.config.tracker.reassociation.appearance == "clip":
                tracker.set_appearance_embedder(self.appearance_embedder)
            self.trackers[camera_id] = tracker
        return tracker

    def _camera_done(self, camera_id: str) -> bool:
        source = self.sources[camera_id]
        if self.max_frames is not None and self.counters[camera_id].frames >= self.max_frames:
            return True
        return source.finished

    def _collect_batch(self, batch_size: int, order: list[str]) -> list[Frame]:
        """Up to ``batch_size`` frames that are ready now, taken round-robin across cameras.

        Never waits: a camera with a backlog (a file, or a live camera that fell behind) fills the
        batch with consecutive frames, in order, while one frame from each of several cameras is
        batched as soon as it is there. A camera's very first frame goes without the rest of its
        backlog (frames it queued while the detector loaded): its first result comes one frame's
        inference after start, not a full batch's.
        """
        frames: list[Frame] = []
        taken = dict.fromkeys(order, 0)
        ready = [c for c in order if not self._camera_done(c)]
        while ready and len(frames) < batch_size:
            still_ready = []
            for camera_id in ready:
                if len(frames) >= batch_size:
                    break
                done = self.counters[camera_id].frames + self._in_flight.get(camera_id, 0)
                limit = self.max_frames
                if limit is not None and done + taken[camera_id] >= limit:
                    continue
                if taken[camera_id] and not done:
                    continue  # its first frame goes alone
                frame = self.sources[camera_id].read(timeout_s=0)
                if frame is not None:
                    frames.append(frame)
                    taken[camera_id] += 1
                    still_ready.append(camera_id)
            ready = still_ready
        return frames

    def _track(self, frame: Frame, detections: Detections) -> FrameResult:
        tracks, events = self._tracker_for(frame.camera_id).update(frame, detections)
        self._last_frame[frame.camera_id] = frame
        with self._lock:
            counters = self.counters[frame.camera_id]
            counters.frames += 1
            counters.detections += len(detections)
            counters.active_tracks = len(tracks)
            counters.tracks_seen += sum(1 for e in events if e.kind is TrackEventKind.NEW)
            if counters.first_frame_wall is None:
                counters.first_frame_wall = frame.wall_time
            counters.last_frame_wall = frame.wall_time
            counters.frame_analysed(time.monotonic())
        return FrameResult(frame, tracks, events)

    def _analyze(self, results: list[FrameResult]) -> None:
        for analyzer in self.analyzers:
            try:
                analyzer.process(results)
            except Exception:
                # A failing analyser must not stop the cameras; it is logged and counted.
                self.analyzer_errors += 1
                log.exception("analyser %s failed on a batch", type(analyzer).__name__)

    def _emit(self, result: FrameResult) -> None:
        frame, tracks, events = result.frame, result.tracks, result.events
        if self._jsonl is not None:
            record = frame_record(frame, tracks, events)
            record.update({k: v for k, v in result.extra.items() if not k.startswith("_")})  # "_": live only
            self._jsonl.write(record)
        if self.video_dir is not None:
            self._write_video(frame, tracks)
        if self.on_frame is not None:
            self.on_frame(frame, tracks, events)

    def _write_video(self, frame: Frame, tracks: Detections) -> None:
        writer = self.videos.get(frame.camera_id)
        if writer is None:
            assert self.video_dir is not None
            fps = self.frame_rate_of(frame.camera_id)
            writer = VideoWriter(self.video_dir / f"{frame.camera_id}.mp4", frame.width, frame.height, fps)
            self.videos[frame.camera_id] = writer
        writer.write(annotate(frame, tracks))

    def run(self) -> RunSummary:
        """Run to the end; returns the summary. Always releases sources and outputs."""
        started = time.monotonic()
        try:
            if self._detector is None and self._detector_loader is None:
                self._detector_loader = DetectorLoader(self.config.detector, self.config.state_dir)
            # Build one tracker now: a bad tracker setting fails before any camera starts.
            build_tracker(self.config.tracker, "startup-check", DEFAULT_FRAME_RATE)
            if self.jsonl_path is not None:
                self._jsonl = JsonlWriter(self.jsonl_path)
            # Cameras open and decode their first frames while the detector finishes loading: file
            # sources wait for the loop, live ones drop the oldest frames of their short queue.
            self._open_sources()
            if self._detector is None:
                assert self._detector_loader is not None
                self._detector = self._detector_loader.result()
            detector = self._detector
            if not self.sources and not self.keep_running:
                self._stop_reason = "no camera could be opened"
            else:
                self._loop(detector, started)
        finally:
            self._shutdown()
        return RunSummary(
            cameras=self.status(),
            duration_s=time.monotonic() - started,
            stopped_by=self._stop_reason,
            detect_seconds=self.detect_seconds,
            detect_batches=self.detect_batches,
        )

    def _loop(self, detector: Detector, started: float) -> None:
        """Collect, detect, track, in a pipeline of two threads.

        While the inference thread runs batch N on the engine, this thread collects batch N+1 and
        pre-processes it (letterboxed into the detector's other input buffer), then hands it to the
        inference thread and decodes, tracks and emits batch N. Batches are finished in the order
        they were collected, so each camera's frames reach its own tracker in order.
        """
        order = list(self.sources)
        self._in_flight = dict.fromkeys(order, 0)
        pending: _InFlight | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchword-infer") as inference:
            while not self._stop.is_set():
                if self._camera_changes:
                    self._complete(detector, pending)  # a changed camera's frames first
                    pending = None
                    order = self._apply_camera_changes(order)
                if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                    self._stop_reason = "duration reached"
                    break
                if (
                    pending is None
                    and not self.keep_running
                    and all(self._camera_done(camera_id) for camera_id in order)
                ):
                    limit_hit = self.max_frames is not None and any(
                        self.counters[c].frames >= self.max_frames for c in order
                    )
                    self._stop_reason = "max frames reached" if limit_hit else "end of input"
                    break
                frames = self._collect_batch(detector.batch_size, order)
                if not frames and pending is None:
                    time.sleep(IDLE_SLEEP_S)
                    continue
                following: _InFlight | None = None
                if frames:
                    # rotate so that no camera is always first when the batch is smaller than the camera count
                    order = order[1:] + order[:1]
                    t0 = time.perf_counter()
                    prepared = detector.prepare([frame.image for frame in frames])
                    self.detect_seconds += time.perf_counter() - t0
                    for frame in frames:
                        self._in_flight[frame.camera_id] = self._in_flight.get(frame.camera_id, 0) + 1
                    following = _InFlight(frames, prepared)
                previous = pending
                if previous is not None:
                    previous.raw = previous.result()  # wait: one batch on the engine at a time
                if following is not None:
                    following.future = inference.submit(self._infer, detector, following.prepared)
                if previous is not None:
                    self._finish(detector, previous)
                pending = following
            self._complete(detector, pending)

    def _infer(self, detector: Detector, prepared: PreparedBatch) -> tuple[Any, float]:
        """On the inference thread: the engine on one prepared batch, and how long it took (s)."""
        t0 = time.perf_counter()
        raw = detector.infer(prepared)
        return raw, time.perf_counter() - t0

    def _complete(self, detector: Detector, pending: _InFlight | None) -> None:
        """Wait for the batch in flight, if any, and finish it (decode, track, emit)."""
        if pending is not None:
            pending.raw = pending.result()
            self._finish(detector, pending)

    def _finish(self, detector: Detector, batch: _InFlight) -> None:
        raw, seconds = batch.raw
        t0 = time.perf_counter()
        batch_detections = detector.finish(batch.prepared, raw)
        self.detect_seconds += seconds + time.perf_counter() - t0
        self.detect_batches += 1
        for frame in batch.frames:
            self._in_flight[frame.camera_id] -= 1
        results = [
            self._track(frame, detections)
            for frame, detections in zip(batch.frames, batch_detections, strict=True)
        ]
        # Analysed frame by frame, in order: what the analysers see (a track's boxes, its poses,
        # its samples) must not depend on how many frames a batch happened to hold (it depends on
        # timing), or two runs on one file would decide differently.
        for result in results:
            self._analyze([result])
        for result in results:
            self._emit(result)

    def _shutdown(self) -> None:
        # Stop all cameras at once so that shutdown takes one timeout, not one per camera.
        stoppers = [
            threading.Thread(target=self._stop_source, args=(camera_id, source), daemon=True)
            for camera_id, source in self.sources.items()
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(timeout=SOURCE_STOP_TIMEOUT_S + 0.5)
        for writer in self.videos.values():
            writer.close(timeout_s=1.0)
        if self._jsonl is not None:
            self._jsonl.close()
        if self._detector is not None and self._owns_detector:
            self._detector.close()
        if self._detector_loader is not None:  # a build still running (a failed start) is waited for
            self._detector_loader.close()

    def _stop_source(self, camera_id: str, source: Source) -> None:
        try:
            source.stop(timeout_s=SOURCE_STOP_TIMEOUT_S)
        except Exception:
            log.exception("camera %s: error while stopping", camera_id)
        stats = source.stats()
        with self._lock:
            counters = self.counters.get(camera_id)  # None once removed at run time
            if stats.last_error and counters is not None and counters.error is None:
                counters.error = stats.last_error
