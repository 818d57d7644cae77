"""Watchword against ultralytics' own tracking loop, side by side in one run, on the same inputs.

Both sides get the same YOLO ONNX file (YOLOv8n built from ultralytics' yaml with random weights,
nothing downloaded; its head nudged as in the tests so that some boxes pass the threshold and the
tracker has work), the same sample video, image size, confidence and IoU thresholds, person class
and ByteTrack. Each side runs in its own process, measured from outside:

- Watchword: ``watchword run`` (GStreamer decode, the ``yolo`` detector on ONNX Runtime, ByteTrack,
  one JSON line per frame).
- Peer: ``YOLO(onnx).track(video, stream=True, ...)`` iterated to the end.

Single stream: Watchword on the fp32 graph and on an INT8 copy of it against the peer on the fp32
graph (its way: ultralytics runs the file it is given). The INT8 copy is quantized as ``watchword
export yolo --int8``'s first attempt does it (ONNX Runtime QDQ, per-channel weights, activations and
SiLU quantized, the head's box decoding in float: ``export.yolo.sensitive_layers``), calibrated on 64
frames of the video; random weights cannot pass the export's people gate, and weights do not change
the cost, so this copy skips the gate, for timing only. Every attempt of the export's ladder is
timed too (engine alone, batch 1), so what a site whose weights need a later attempt gets is printed.

Four cameras (the same video four times), as a user would run them: one ``watchword run`` with four
cameras (cross-camera batches of ``--batch`` frames, on the INT8 graph with a dynamic batch axis; the
batch is the smallest within 5 % of the fastest in an in-process sweep of batch 1/2/4/8, warmed up,
interleaved and the median of 5 rounds, printed first) against four peer processes
and against one peer process with four threads (one model per thread, ultralytics' advice for
threads). Aggregate frames/s is every camera's frames after its first over the time from the first
camera's first frame to the last camera's last; peak RSS adds the processes' high-water marks.

Start-up is spawn to the first analysed frame; frames/s is the frames after the first over the time
from the first analysed frame to the last (so neither side's start-up nor its shut-down counts);
peak RSS is the process's high-water mark. Then ``watchword run configs/demo.yaml`` (the offline SSD demo) is
measured the same way. Targets: Watchword (INT8) >= 1.2x the peer's frames/s and <= 0.5x its peak
RSS; four cameras >= 1.5x the better peer set-up; the demo <= 600 MiB and <= 1.0 s to the first frame.

    python -m bench.peers [--frames 150] [--imgsz 640] [--rounds 2] [--cameras 4] [--camera-frames 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run_figures import RunFigures, _vm_hwm_kib, measure_run  # noqa: E402

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CONFIDENCE, IOU = 0.25, 0.7

PEER = textwrap.dedent(
    """
    import os, sys, time
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    onnx, video, marker = sys.argv[1], sys.argv[2], sys.argv[5]
    imgsz, frames = int(sys.argv[3]), int(sys.argv[4])
    from ultralytics import YOLO
    model = YOLO(onnx, task="detect")
    count = 0
    for result in model.track(source=video, stream=True, imgsz=imgsz, conf=%(conf)r, iou=%(iou)r,
                              classes=[0], tracker="bytetrack.yaml", verbose=False, persist=True):
        count += 1
        if count == 1:
            first = time.time()
        if count >= frames:
            break
    open(marker, "w").write(f"{first!r} {time.time()!r} {count}")
    print(count)
    """
) % {"conf": CONFIDENCE, "iou": IOU}

PEER_THREADS = textwrap.dedent(
    """
    import os, sys, threading, time
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    onnx, video, marker = sys.argv[1], sys.argv[2], sys.argv[5]
    imgsz, frames, cameras = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
    from ultralytics import YOLO
    spans = []

    def camera():
        model = YOLO(onnx, task="detect")  # one model per thread: ultralytics' advice for threads
        count, first = 0, None
        for result in model.track(source=video, stream=True, imgsz=imgsz, conf=%(conf)r, iou=%(iou)r,
                                  classes=[0], tracker="bytetrack.yaml", verbose=False, persist=True):
            count += 1
            if count == 1:
                first = time.time()
            if count >= frames:
                break
        spans.append((first, time.time(), count))

    threads = [threading.Thread(target=camera) for _ in range(cameras)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    open(marker, "w").write("\\n".join(f"{a!r} {b!r} {c}" for a, b, c in spans))
    print(sum(c for _, _, c in spans))
    """
) % {"conf": CONFIDENCE, "iou": IOU}


@dataclass
class SideFigures:
    startup_s: float
    fps: float
    peak_rss_mib: float
    frames: int


@dataclass
class Models:
    """The graphs compared: fp32 with a fixed batch of 1 (both sides, single stream), INT8 copies
    with a fixed and a dynamic batch axis (Watchword: single stream, and cross-camera batches), both
    quantized as the export's first attempt, and the fixed graph quantized as each attempt."""

    fp32: Path
    int8: Path
    int8_batched: Path
    attempts: dict[str, Path]


def build_models(work: Path, imgsz: int) -> Models:
    """YOLOv8n from its yaml with random weights, its head nudged as the tests' tiny YOLO is (so a
    few boxes per frame pass the threshold), exported to a fixed 1x3xSxS ONNX graph and to one with
    dynamic axes, each quantized to INT8 as the export's attempts do it (see the module docstring:
    timing only, no people gate)."""
    from engines.ultralytics_import import import_ultralytics
    from engines.yolo_processing import preprocess
    from export.calibration import read_frames
    from export.person_gate import quantize_attempt
    from export.yolo import sensitive_layers
    from tests.fixtures.tiny_models import build_tiny_yolo

    import_ultralytics()
    from ultralytics import YOLO

    weights = build_tiny_yolo(work)
    fixed = Path(
        YOLO(str(weights), task="detect").export(
            format="onnx", imgsz=imgsz, simplify=False, dynamic=False, batch=1, verbose=False
        )
    )
    fp32 = fixed.with_name("yolov8n-fixed.onnx")
    fixed.rename(fp32)
    dynamic = Path(
        YOLO(str(weights), task="detect").export(
            format="onnx", imgsz=imgsz, simplify=False, dynamic=True, verbose=False
        )
    )
    frames = read_frames(SAMPLE, 64)
    calibration = [{"images": preprocess(frames[i : i + 8], imgsz)[0]} for i in range(0, len(frames), 8)]
    singles = [{"images": batch["images"][j : j + 1]} for batch in calibration for j in range(8)]
    attempts: dict[str, Path] = {}
    for number, attempt in enumerate(sensitive_layers(fp32)):
        attempts[attempt[0]] = work / f"yolov8n-fixed.int8-{number}.onnx"
        quantize_attempt(fp32, attempts[attempt[0]], singles, attempt)
    int8_batched = work / "yolov8n-dynamic.int8.onnx"
    quantize_attempt(dynamic, int8_batched, calibration, sensitive_layers(dynamic)[0])
    return Models(fp32, next(iter(attempts.values())), int8_batched, attempts)


def interleaved_rates(
    runs: dict[Any, Callable[[], int]], rounds: int = 5, seconds: float = 0.6
) -> dict[Any, float]:
    """Items per second of each ``run`` (a call returns how many items it did), measured ``rounds``
    times for ``seconds`` each, the runs interleaved round by round so that a change in the machine's
    load falls on all of them alike; the figure per run is the median of its rounds. Warm up first."""
    samples: dict[Any, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            count, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                count += run()
            samples[key].append(count / (time.perf_counter() - started))
    return {key: statistics.median(rates) for key, rates in samples.items()}


def _inference(engine: Any, feed: dict[str, Any], frames: int) -> Callable[[], int]:
    """One inference of ``feed`` (``frames`` frames) on ``engine``, for :func:`interleaved_rates`."""

    def run() -> int:
        engine.infer(feed)
        return frames

    return run


def attempt_speeds(models: Models, imgsz: int) -> dict[str, float]:
    """Engine-only frames/s (ONNX Runtime CPU, batch 1) of the fp32 graph and of each INT8 attempt."""
    from engines import create_engine
    from engines.yolo_processing import preprocess
    from export.calibration import read_frames

    tensor = preprocess(read_frames(SAMPLE, 1), imgsz)[0]
    graphs = {"fp32": models.fp32, **models.attempts}
    with contextlib.ExitStack() as stack:
        engines = {
            label: stack.enter_context(create_engine("onnxruntime", path, providers=["cpu"], warmup=False))
            for label, path in graphs.items()
        }
        for engine in engines.values():
            for _ in range(3):
                engine.infer({"images": tensor})
        return interleaved_rates(
            {label: _inference(engine, {"images": tensor}, 1) for label, engine in engines.items()}
        )


SWEEP_BATCHES = (1, 2, 4, 8)
SWEEP_TIE = 0.05  # a larger batch is chosen only if it is more than 5 % faster than a smaller one


def batch_sweep(onnx: Path, imgsz: int) -> dict[int, float]:
    """Frames/s of the graph on ONNX Runtime (CPU) in this process at batch 1, 2, 4 and 8, each
    warmed up (three inferences), then measured by :func:`interleaved_rates`."""
    from engines import create_engine
    from engines.yolo_processing import preprocess
    from export.calibration import read_frames

    frames = read_frames(SAMPLE, max(SWEEP_BATCHES))
    tensors = {batch: preprocess(frames[:batch], imgsz)[0] for batch in SWEEP_BATCHES}
    with create_engine("onnxruntime", onnx, providers=["cpu"], warmup=False) as engine:
        for tensor in tensors.values():
            for _ in range(3):
                engine.infer({"images": tensor})
        return interleaved_rates(
            {batch: _inference(engine, {"images": tensor}, batch) for batch, tensor in tensors.items()}
        )


def best_batch(rates: dict[int, float]) -> int:
    """The smallest batch within :data:`SWEEP_TIE` of the fastest (smaller batches cost less latency)."""
    fastest = max(rates.values())
    return min(batch for batch, rate in rates.items() if rate >= (1 - SWEEP_TIE) * fastest)


def _watch(process: subprocess.Popen[str]) -> int:
    """Wait for ``process``, polling its peak RSS; the high-water mark in KiB."""
    peak_kib = 0
    while True:
        pid, _status, _usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            return peak_kib
        peak_kib = max(peak_kib, _vm_hwm_kib(process.pid) or 0)
        time.sleep(0.01)


def _spans(markers: list[Path], started_wall: float) -> SideFigures:
    """Aggregate figures of the ``first last count`` lines the peer processes wrote."""
    rows = [line.split() for marker in markers for line in marker.read_text().splitlines() if line.strip()]
    firsts = [float(row[0]) - started_wall for row in rows]
    lasts = [float(row[1]) - started_wall for row in rows]
    counts = [int(row[2]) for row in rows]
    fps = sum(c - 1 for c in counts) / max(max(lasts) - min(firsts), 1e-9)
    return SideFigures(min(firsts), fps, 0.0, sum(counts))


def run_peer(onnx: Path, imgsz: int, frames: int, work: Path, processes: int = 1) -> SideFigures:
    """``processes`` peer processes side by side, each one stream (one: the single-stream case)."""
    markers = [work / f"peer-{index}" for index in range(processes)]
    started_wall = time.time()
    children = []
    for marker in markers:
        marker.unlink(missing_ok=True)
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", PEER, str(onnx), str(SAMPLE), str(imgsz), str(frames), str(marker)],
                stdout=subprocess.DEVNULL,  # ultralytics prints to stdout too
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    peaks: list[int] = [0] * len(children)
    done = [False] * len(children)
    while not all(done):
        for index, process in enumerate(children):
            if done[index]:
                continue
            pid, _status, _usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                done[index] = True
                continue
            peaks[index] = max(peaks[index], _vm_hwm_kib(process.pid) or 0)
        time.sleep(0.01)
    figures = _spans(markers, started_wall)
    figures.peak_rss_mib = sum(peaks) / 1024
    return figures


def run_peer_threads(onnx: Path, imgsz: int, frames: int, work: Path, cameras: int) -> SideFigures:
    """One peer process running ``cameras`` streams in threads."""
    marker = work / "peer-threads"
    marker.unlink(missing_ok=True)
    started_wall = time.time()
    process = subprocess.Popen(
        [sys.executable, "-c", PEER_THREADS, str(onnx), str(SAMPLE), str(imgsz), str(frames), str(marker),
         str(cameras)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    peak_kib = _watch(process)
    figures = _spans([marker], started_wall)
    figures.peak_rss_mib = peak_kib / 1024
    return figures


def run_watchword(
    onnx: Path, imgsz: int, frames: int, work: Path, cameras: int = 1, batch: int = 1
) -> SideFigures:
    """One ``watchword run`` with ``cameras`` cameras on the sample video, ``frames`` frames each."""
    config = {
        "site": "peers",
        "cameras": [
            {"id": f"camera{index}", "uri": str(SAMPLE), "max_width": 768, "max_height": 576}
            for index in range(cameras)
        ],
        "detector": {
            "type": "yolo",
            "model": str(onnx),
            "imgsz": imgsz,
            "confidence": CONFIDENCE,
            "iou": IOU,
            "classes": [0],
            "batch_size": batch,
            "engine": {"type": "onnxruntime", "providers": ["cpu"]},
        },
        "tracker": {"type": "bytetrack"},
    }
    path = work / "watchword.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    figures: RunFigures = measure_run(path, frames)
    # every camera's frames after the first, over the first camera's first frame to the last's last
    fps = (figures.frames - cameras) / max(figures.last_frame_s - figures.first_frame_s, 1e-9)
    return SideFigures(figures.first_frame_s, fps, figures.peak_rss_mib, figures.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side")
    parser.add_argument(
        "--cameras", type=int, default=4, help="cameras of the multi-camera case (0: skip it)"
    )
    parser.add_argument("--camera-frames", type=int, default=60, help="frames per camera, multi-camera case")
    parser.add_argument(
        "--batch", type=int, default=None, help="Watchword's batch (default: the sweep's best)"
    )
    parser.add_argument("--demo-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="watchword-peers-") as tmp:
        work = Path(tmp)
        models = build_models(work, args.imgsz)
        speeds = attempt_speeds(models, args.imgsz)
        sweep = batch_sweep(models.int8_batched, args.imgsz)
        batch = args.batch or best_batch(sweep)
        ours: list[SideFigures] = []
        ours_int8: list[SideFigures] = []
        peer: list[SideFigures] = []
        for _ in range(args.rounds):
            ours.append(run_watchword(models.fp32, args.imgsz, args.frames, work))
            ours_int8.append(run_watchword(models.int8, args.imgsz, args.frames, work))
            peer.append(run_peer(models.fp32, args.imgsz, args.frames, work))
        multi: dict[str, SideFigures] = {}
        if args.cameras > 0:
            n, frames = args.cameras, args.camera_frames
            multi["watchword"] = run_watchword(models.int8_batched, args.imgsz, frames, work, n, batch)
            multi["processes"] = run_peer(models.fp32, args.imgsz, frames, work, processes=n)
            multi["threads"] = run_peer_threads(models.fp32, args.imgsz, frames, work, n)
        demo = [measure_run(REPO / "configs" / "demo.yaml", 40) for _ in range(args.demo_runs)]
        shutil.rmtree(work / "runs", ignore_errors=True)

    def med(rows: list[SideFigures], field: str) -> float:
        return statistics.median(getattr(r, field) for r in rows)

    load = os.getloadavg()[0]
    print(
        f"\nYOLOv8n (random weights) ONNX, {args.imgsz} px, conf {CONFIDENCE}, iou {IOU}, person, ByteTrack,"
    )
    print(f"{SAMPLE.name}; load average {load:.1f} on {os.cpu_count()} CPUs")
    attempts = ", ".join(
        f"{label}: {rate:.1f} ({rate / speeds['fp32']:.2f}x)"
        for label, rate in speeds.items()
        if label != "fp32"
    )
    first = next(iter(models.attempts))  # the labels outlive the folder
    print(
        f"engine alone, batch 1, frames/s (median of 5 interleaved rounds): fp32 {speeds['fp32']:.1f}; "
        f"INT8 as each export attempt quantizes it, fp32 layers {attempts} -> '{first}' timed below"
    )
    rates = ", ".join(f"{b}: {r:.1f}" for b, r in sweep.items())
    print(
        f"INT8 graph on ONNX Runtime CPU, frames/s by batch (median of 5 interleaved rounds after "
        f"warm-up): {rates} -> Watchword batch {batch}"
    )
    print(f"\nsingle stream, {args.frames} frames, median of {args.rounds} alternating runs")
    header = ("ww int8", "ww fp32", "ultralytics", "int8 ratio", "fp32 ratio")
    print(f"{'':28}" + "".join(f"{h:>12}" for h in header) + "   target")
    rows = [
        ("frames/s", "fps", "{:.2f}", ">= 1.2x (int8)"),
        ("start-up to first frame (s)", "startup_s", "{:.2f}", ""),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}", "<= 0.5x"),
    ]
    for label, field, fmt, target in rows:
        a, f, b = med(ours_int8, field), med(ours, field), med(peer, field)
        cells = [fmt.format(a), fmt.format(f), fmt.format(b), f"{a / b:.2f}x", f"{f / b:.2f}x"]
        print(f"{label:28}" + "".join(f"{c:>12}" for c in cells) + f"   {target}")
    if multi:
        ww, procs, threads = multi["watchword"], multi["processes"], multi["threads"]
        better = procs if procs.fps >= threads.fps else threads
        n = args.cameras
        print(f"\n{n} cameras, {args.camera_frames} frames each: one watchword run (INT8, batch {batch})")
        print(f"against {n} ultralytics processes and one ultralytics process with {n} threads (fp32)")
        columns = ("watchword", "processes", "threads", "ratio")
        print(f"{'':30}" + "".join(f"{h:>11}" for h in columns) + "   target (vs the better peer)")
        cells = [f"{ww.fps:.2f}", f"{procs.fps:.2f}", f"{threads.fps:.2f}", f"{ww.fps / better.fps:.2f}x"]
        print(f"{'aggregate frames/s':30}" + "".join(f"{c:>11}" for c in cells) + "   >= 1.5x")
        rss = [ww.peak_rss_mib, procs.peak_rss_mib, threads.peak_rss_mib]
        cells = [f"{r:.0f}" for r in rss] + [f"{ww.peak_rss_mib / better.peak_rss_mib:.2f}x"]
        print(f"{'peak RSS, all processes (MiB)':30}" + "".join(f"{c:>11}" for c in cells) + "   <= 0.5x")
        print(f"{'frames analysed':30}" + "".join(f"{r.frames:>11}" for r in (ww, procs, threads)))
    print(
        f"\nwatchword run configs/demo.yaml (40 frames, median of {len(demo)}): "
        f"first frame {statistics.median(r.first_frame_s for r in demo):.2f} s (target <= 1.0), "
        f"peak RSS {statistics.median(r.peak_rss_mib for r in demo):.0f} MiB (target <= 600)"
    )


if __name__ == "__main__":
    main()
