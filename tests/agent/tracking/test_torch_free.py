"""Building and running a tracker imports neither torch nor ultralytics (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
import numpy as np
from agent.tracking.config import BotSortConfig, ByteTrackConfig
from agent.tracking import build_tracker
from agent.types import Detections, Frame

rng = np.random.default_rng(0)
for config in (ByteTrackConfig.model_validate({"type": "bytetrack"}),
               BotSortConfig.model_validate({"type": "botsort", "gmc_method": "sparseOptFlow"})):
    tracker = build_tracker(config, "cam", frame_rate=10.0)
    for i in range(30):
        image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        box = np.array([[10 + 3 * i, 50, 60 + 3 * i, 170]], np.float32)
        tracked, events = tracker.update(
            Frame("cam", i, i / 10, i / 10, image),
            Detections(xyxy=box, confidence=np.array([0.9], np.float32), class_id=np.zeros(1, np.int64)),
        )
    assert tracked.tracker_id.tolist() == [1], tracked.tracker_id
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "ultralytics", "torchvision", "scipy"})
print("HEAVY", heavy[:5])
"""


def test_tracking_imports_neither_torch_nor_ultralytics() -> None:
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=repo, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"
