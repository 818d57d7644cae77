"""Watchword against ultralytics' own tracking loop, side by side in one run, on the same inputs.

Both sides get the same YOLO ONNX file (YOLOv8n built from ultralytics' yaml with random weights,
nothing downloaded; its head nudged as in the tests so that some boxes pass the threshold and the
tracker has work), the same sample video, image size, confidence and IoU thresholds, person class
and ByteTrack. Each side runs in its own process, measured from outside:

- Watchword: ``watchword run`` (GStreamer decode, the ``yolo`` detector on ONNX Runtime, ByteTrack,
  one JSON line per frame).
- Peer: ``YOLO(onnx).track(video, stream=True, ...)`` iterated to the end.

Start-up is spawn to the first analysed frame; frames/s is the frames after the first over the time
from the first analysed frame to the last (so neither side's start-up nor its shut-down counts);
peak RSS is the process's high-water mark. Then ``watchword run configs/demo.yaml`` (the offline SSD demo) is
measured the same way. Targets: Watchword >= 1.2x the peer's frames/s and <= 0.5x its peak RSS;
the demo <= 600 MiB and <= 1.0 s to the first frame.

    python -m bench.peers [--frames 150] [--imgsz 640] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

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
    open(marker, "w").write(f"{first!r} {time.time()!r}")
    print(count)
    """
) % {"conf": CONFIDENCE, "iou": IOU}


@dataclass
class SideFigures:
    startup_s: float
    fps: float
    peak_rss_mib: float
    frames: int


def build_model(work: Path, imgsz: int) -> Path:
    """YOLOv8n from its yaml with random weights, its head nudged as the tests' tiny YOLO is (so a
    few boxes per frame pass the threshold), exported to a fixed 1x3xSxS ONNX graph."""
    from engines.ultralytics_import import import_ultralytics
    from tests.fixtures.tiny_models import build_tiny_yolo

    import_ultralytics()
    from ultralytics import YOLO

    weights = build_tiny_yolo(work)
    exported = YOLO(str(weights), task="detect").export(
        format="onnx", imgsz=imgsz, simplify=False, dynamic=False, batch=1, verbose=False
    )
    return Path(exported)


def run_peer(onnx: Path, imgsz: int, frames: int, work: Path) -> SideFigures:
    marker = work / "peer-first-frame"
    marker.unlink(missing_ok=True)
    started_wall = time.time()
    process = subprocess.Popen(
        [sys.executable, "-c", PEER, str(onnx), str(SAMPLE), str(imgsz), str(frames), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak_kib = 0
    while True:
        pid, _status, _usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak_kib = max(peak_kib, _vm_hwm_kib(process.pid) or 0)
        time.sleep(0.01)
    assert process.stdout is not None
    lines = process.stdout.read().strip().splitlines()  # ultralytics prints to stdout too
    count = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    first_wall, last_wall = (float(value) for value in marker.read_text().split())
    first, last = first_wall - started_wall, last_wall - started_wall
    return SideFigures(first, (count - 1) / max(last - first, 1e-9), peak_kib / 1024, count)


def run_watchword(onnx: Path, imgsz: int, frames: int, work: Path) -> SideFigures:
    config = {
        "site": "peers",
        "cameras": [{"id": "sample", "uri": str(SAMPLE), "max_width": 768, "max_height": 576}],
        "detector": {
            "type": "yolo",
            "model": str(onnx),
            "imgsz": imgsz,
            "confidence": CONFIDENCE,
            "iou": IOU,
            "classes": [0],
            "batch_size": 1,
            "engine": {"type": "onnxruntime", "providers": ["cpu"]},
        },
        "tracker": {"type": "bytetrack"},
    }
    path = work / "watchword.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    figures: RunFigures = measure_run(path, frames)
    fps = (frames - 1) / max(figures.last_frame_s - figures.first_frame_s, 1e-9)
    return SideFigures(figures.first_frame_s, fps, figures.peak_rss_mib, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side")
    parser.add_argument("--demo-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="watchword-peers-") as tmp:
        work = Path(tmp)
        onnx = build_model(work, args.imgsz)
        ours: list[SideFigures] = []
        peer: list[SideFigures] = []
        for _ in range(args.rounds):
            ours.append(run_watchword(onnx, args.imgsz, args.frames, work))
            peer.append(run_peer(onnx, args.imgsz, args.frames, work))
        demo = [measure_run(REPO / "configs" / "demo.yaml", 40) for _ in range(args.demo_runs)]
        shutil.rmtree(work / "runs", ignore_errors=True)

    def med(rows: list[SideFigures], field: str) -> float:
        return statistics.median(getattr(r, field) for r in rows)

    print(f"\nYOLOv8n (random weights) ONNX, {args.imgsz} px, {args.frames} frames of {SAMPLE.name}, "
          f"conf {CONFIDENCE}, iou {IOU}, person, ByteTrack; median of {args.rounds} alternating runs; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'':28}{'watchword':>12}{'ultralytics':>14}{'ratio':>9}   target")
    rows = [
        ("frames/s", "fps", "{:.2f}", ">= 1.2x"),
        ("start-up to first frame (s)", "startup_s", "{:.2f}", ""),
        ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}", "<= 0.5x"),
    ]
    for label, field, fmt, target in rows:
        a, b = med(ours, field), med(peer, field)
        print(f"{label:28}{fmt.format(a):>12}{fmt.format(b):>14}{a / b:>8.2f}x   {target}")
    print(
        f"\nwatchword run configs/demo.yaml (40 frames, median of {len(demo)}): "
        f"first frame {statistics.median(r.first_frame_s for r in demo):.2f} s (target <= 1.0), "
        f"peak RSS {statistics.median(r.peak_rss_mib for r in demo):.0f} MiB (target <= 600)"
    )


if __name__ == "__main__":
    main()
