"""Building a tracker must not take OpenCV's threads away from the detector.

ultralytics sets ``cv2.setNumThreads(0)`` when it is imported, which halved the SSD detector's
speed in the pipeline (bench/pipeline.py). Checked in a fresh process, since the import happens once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import cv2
cv2.setNumThreads(2)
from agent.tracking.config import ByteTrackConfig
from agent.tracking import build_tracker
build_tracker(ByteTrackConfig(type="bytetrack"), "cam", frame_rate=10.0)
print(cv2.getNumThreads())
"""


def test_tracker_leaves_opencv_threads_alone() -> None:
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=repo, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "2"
