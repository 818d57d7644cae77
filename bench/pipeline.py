"""Pipeline overhead benchmark on the sample video, measured side by side in one run.

(a) the detector alone on frames decoded beforehand,
(b) the full pipeline: GStreamer decode, batched detection, tracking, JSON lines written, in
    steady state (between the first and the last frame written; start-up is reported apart),
(c) a naive single-threaded OpenCV ``VideoCapture`` loop doing the same work with the same detector,
(d) four live cameras at once: four RTSP clients of one gst-rtsp-server stream of the sample
    (10 frames/s each, so 40 frames/s offered) for a fixed time: aggregate frames/s analysed and
    per-camera drops (the server's H.264 encoding shares the same CPU).

Prints frames/s and the ratios b/a (target >= 0.9) and b/c (target > 1).

    .venv/bin/python bench/pipeline.py [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import AgentConfig
from agent.detection import build_detector
from agent.detection.config import SSDDetectorConfig
from agent.outputs.jsonl import JsonlWriter, frame_record
from agent.pipeline import Pipeline
from agent.sources.config import CameraConfig
from agent.tracking import build_tracker
from agent.types import Frame
from tests.fixtures.rtsp_server import RtspServer

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def decode_frames(count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(SAMPLE))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def detector_alone(detector, images: list) -> float:
    started = time.perf_counter()
    for i in range(0, len(images), detector.batch_size):
        detector.detect(images[i : i + detector.batch_size])
    return len(images) / (time.perf_counter() - started)


def naive_loop(detector, config: AgentConfig, count: int, out: Path) -> float:
    tracker = build_tracker(config.tracker, "naive", frame_rate=10.0)
    writer = JsonlWriter(out)
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(SAMPLE))
    index = 0
    while index < count:
        ok, image = capture.read()
        if not ok:
            break
        frame = Frame("naive", index, index / 10.0, time.time(), image)
        detections = detector.detect([image])[0]
        tracks, events = tracker.update(frame, detections)
        writer.write(frame_record(frame, tracks, events))
        index += 1
    capture.release()
    writer.close()
    return index / (time.perf_counter() - started)


def pipeline_run(detector, config: AgentConfig, count: int, out: Path) -> tuple[float, float]:
    """Steady-state frames/s (between the first and the last frame written out) and start-up seconds."""
    emitted: list[float] = []
    pipeline = Pipeline(
        config,
        jsonl_path=out,
        max_frames=count,
        detector=detector,
        on_frame=lambda *_: emitted.append(time.time()),
    )
    started = time.time()
    summary = pipeline.run()
    lines = sum(1 for _ in out.open())
    assert lines == summary.frames == len(emitted), (lines, summary.frames, len(emitted))
    return (len(emitted) - 1) / (emitted[-1] - emitted[0]), emitted[0] - started


def live_run(detector, config: AgentConfig, seconds: float, out: Path) -> tuple[float, list]:
    """Aggregate analysed frames/s over the time after every camera delivered its first frame."""
    pipeline = Pipeline(config, jsonl_path=out, duration_s=seconds, detector=detector)
    summary = pipeline.run()
    firsts = [s.counters.first_frame_wall for s in summary.cameras if s.counters.first_frame_wall]
    lasts = [s.counters.last_frame_wall for s in summary.cameras if s.counters.last_frame_wall]
    span = max(lasts) - max(firsts) if firsts and lasts else 0.0
    frames_after = 0
    start = max(firsts) if firsts else 0.0
    for line in out.open():
        if json.loads(line)["wall_time"] >= start:
            frames_after += 1
    return (frames_after / span if span > 0 else 0.0), summary.cameras


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=300, help="frames per measurement")
    parser.add_argument("--cameras", type=int, default=4, help="cameras in the multi-camera run")
    parser.add_argument("--live-seconds", type=float, default=30.0, help="length of the multi-camera run")
    args = parser.parse_args()

    detector_config = SSDDetectorConfig(type="ssd-mobilenet", batch_size=4)
    camera = CameraConfig(id="sample", uri=str(SAMPLE), max_width=768, max_height=576)
    config = AgentConfig(cameras=[camera], detector=detector_config)
    detector = build_detector(detector_config)
    images = decode_frames(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fps_a = detector_alone(detector, images)
        fps_b, startup_b = pipeline_run(detector, config, len(images), tmp_path / "b.jsonl")
        fps_c = naive_loop(detector, config, len(images), tmp_path / "c.jsonl")

        with RtspServer(file=SAMPLE) as server:
            cameras = [
                CameraConfig(id=f"cam{i}", uri=server.url, max_width=768, max_height=576)
                for i in range(args.cameras)
            ]
            multi = AgentConfig(cameras=cameras, detector=detector_config)
            fps_d, statuses = live_run(detector, multi, args.live_seconds, tmp_path / "d.jsonl")

    rows = [
        ("(a) detector alone, pre-decoded", fps_a),
        ("(b) full pipeline", fps_b),
        ("(c) naive OpenCV loop", fps_c),
        (f"(d) {args.cameras} live RTSP cameras, aggregate", fps_d),
    ]
    print(
        f"\nsample video, {len(images)} frames per run, detector {detector.name} batch {detector.batch_size}"
    )
    print(f"{'measurement':38s} {'frames/s':>9s}")
    for name, fps in rows:
        print(f"{name:38s} {fps:9.2f}")
    print(f"{'b/a (target >= 0.90)':38s} {fps_b / fps_a:9.3f}")
    print(f"{'(b) start-up before the first frame, s':38s} {startup_b:9.2f}")
    print(f"{'b/c (target > 1.00)':38s} {fps_b / fps_c:9.3f}")
    print(f"\n{'camera':8s} {'analysed':>9s} {'drops':>7s} {'reconnects':>10s}")
    for status in statuses:
        source = status.source
        drops = source.drops if source else 0
        reconnects = source.reconnects if source else 0
        print(f"{status.counters.camera_id:8s} {status.counters.frames:9d} {drops:7d} {reconnects:10d}")
    detector.close()


if __name__ == "__main__":
    main()
