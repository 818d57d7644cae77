"""NVDEC check for a machine with an NVIDIA GPU: decode an H.264 clip of the sample video with
``decode: nvdec`` and with ``decode: software``, side by side, and report frames/s of each.

    python -m bench.nvdec_check [--frames 300]

Exit status 0 when the NVDEC pipeline delivered every frame through an ``nv*`` decoder, 1 when it
did not, 2 when this machine has no NVDEC decoder in its GStreamer registry.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.sources import open_source  # noqa: E402
from agent.sources.config import CameraConfig  # noqa: E402
from agent.sources.decoders import DecoderUnavailableError, plan_decoding  # noqa: E402
from agent.sources.pipeline import ensure_gst  # noqa: E402

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def make_h264(path: Path) -> None:
    subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={SAMPLE}", "!", "decodebin", "!", "videoconvert", "!",
         "openh264enc", "!", "h264parse", "!", "mp4mux", "!", "filesink", f"location={path}"],
        check=True, timeout=300,
    )  # fmt: skip


def decode(path: Path, choice: str) -> tuple[int, float]:
    camera = CameraConfig.model_validate(
        {"id": choice, "uri": str(path), "decode": choice, "max_width": 1920, "max_height": 1080}
    )
    source = open_source(camera)
    started = time.perf_counter()
    source.start()
    frames = 0
    while not source.finished:
        if source.read(timeout_s=0.5) is not None:
            frames += 1
    elapsed = time.perf_counter() - started
    source.stop()
    return frames, frames / elapsed if elapsed > 0 else 0.0


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ensure_gst()
    try:
        plan = plan_decoding("nvdec", "nvdec-check")
    except DecoderUnavailableError as exc:
        print(f"nvdec_check: {exc}")
        return 2
    with tempfile.TemporaryDirectory() as work:
        clip = Path(work) / "sample-h264.mp4"
        make_h264(clip)
        software = decode(clip, "software")
        nvdec = decode(clip, "nvdec")
    print(f"decoders: {', '.join(plan.decoders)}")
    print(f"software: {software[0]} frames, {software[1]:.1f} frames/s")
    print(f"nvdec:    {nvdec[0]} frames, {nvdec[1]:.1f} frames/s")
    return 0 if nvdec[0] == software[0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
