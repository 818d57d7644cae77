"""Thresholds from normal footage: the choice on hand-made maxima, and the command on the sample video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.matching.calibration import THRESHOLD_STEP, choose_threshold
from agent.queries import QueryRegistry

REPO = Path(__file__).resolve().parents[3]


def test_threshold_lets_through_at_most_the_allowed_tracks() -> None:
    maxima = [0.9, 0.2, 0.7, 0.4, 0.65]
    threshold, alarms = choose_threshold(maxima, allowed=0, floor=0.1)
    assert threshold == pytest.approx(0.9 + THRESHOLD_STEP) and alarms == 0
    threshold, alarms = choose_threshold(maxima, allowed=2, floor=0.1)
    assert threshold == pytest.approx(0.65 + THRESHOLD_STEP) and alarms == 2
    # the floor wins when the footage is quieter than it
    threshold, alarms = choose_threshold(maxima, allowed=2, floor=0.8)
    assert threshold == 0.8 and alarms == 1
    # more alarms allowed than tracks: any threshold meets the target, the floor is kept
    assert choose_threshold(maxima, allowed=10, floor=0.5) == (0.5, 3)
    assert choose_threshold([], allowed=0, floor=0.5) == (0.5, 0)
    assert choose_threshold([0.9999], allowed=0, floor=0.5)[0] == pytest.approx(1 - THRESHOLD_STEP)


@pytest.mark.slow
def test_calibrate_command_sets_thresholds_from_the_sample(
    tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> None:
    database = tmp_path / "queries.db"
    registry = QueryRegistry(database)
    falling = registry.add("a person falling down")
    fight = registry.add("two people fighting", threshold=0.9)
    config = tmp_path / "site.yaml"
    config.write_text(
        f"database: {database}\n"
        f"cameras:\n  - {{id: cam, uri: test://, analysis_fps: 5}}\n"
        f"matching:\n  embedder: {{model_dir: '{clip_fp32}', engine: {{type: onnxruntime}}}}\n"
        "  embed_interval_s: 0.5\n"
    )
    command = [
        sys.executable, "-m", "agent.cli", "calibrate", str(config), "--video", str(sample_video),
        "--target-false-alarms-per-hour", "60", "--min-threshold", "0.05", "--max-frames", "50",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    # 50 frames at 5 frames/s are 10 s of footage: 60 alarms/hour allow floor(60 * 10 / 3600) = 0 alarms
    assert "50 frames" in result.stdout
    for query in (falling, fight):
        updated = registry.get(query.id)
        assert updated.threshold_source == "calibrated"
        assert updated.threshold is not None and updated.threshold > 0.05
        row = next(line for line in result.stdout.splitlines() if line.strip().startswith(f"{query.id} "))
        assert row.split()[6] == "0", "no track of the normal footage would alert"


def test_calibrate_needs_a_clip_model(tmp_path: Path, sample_video: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"database: {tmp_path}/q.db\ncameras:\n  - {{id: cam, uri: test://}}\n")
    command = [sys.executable, "-m", "agent.cli", "calibrate", str(config), "--video", str(sample_video),
               "--target-false-alarms-per-hour", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "matching.embedder" in result.stderr
