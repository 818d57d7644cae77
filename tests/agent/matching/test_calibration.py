"""Thresholds from normal footage: the choice on hand-made maxima, and the command on the sample video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.matching.calibration import (
    THRESHOLD_STEP,
    choose_threshold,
    footage_warning,
    minimum_footage_hours,
)
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
def test_calibrate_command_sets_thresholds_keeps_manual_ones_and_warns_on_short_footage(
    tmp_path: Path, clip_fp32: Path, sample_video: Path
) -> None:
    database = tmp_path / "queries.db"
    registry = QueryRegistry(database)
    falling = registry.add("a person falling down")
    fight = registry.add("two people fighting", threshold=0.9)  # set by hand
    assert fight.threshold_source == "manual"
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
    # too short for the target: said before the run and after it, with the footage it would need
    assert "10 s of footage cannot honour 60 false alarm(s) per hour" in result.stderr
    assert "at least 60 s of normal footage" in result.stdout
    # the progress bar ran on stderr, counting the frames
    assert "calibrating" in result.stderr and "50/50" in result.stderr
    updated = registry.get(falling.id)
    assert updated.threshold_source == "calibrated" and updated.threshold is not None
    assert updated.threshold > 0.05
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith(f"{falling.id} "))
    assert row.split()[6] == "0", "no track of the normal footage would alert"
    kept = registry.get(fight.id)
    assert (kept.threshold, kept.threshold_source) == (0.9, "manual")
    assert "kept: set by hand (0.900)" in result.stdout and "--overwrite-manual" in result.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "agent.cli", "query", "list", "--db", str(database)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
    ).stdout  # fmt: skip
    assert "thr=0.900 (manual)" in listing and "(calibrated)" in listing

    again = subprocess.run(
        [*command, "--overwrite-manual", "--no-progress", "--target-false-alarms-per-hour", "0"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "cannot honour" not in again.stdout + again.stderr  # a target of 0 needs no minimum
    assert "calibrating" not in again.stderr
    replaced = registry.get(fight.id)
    assert replaced.threshold_source == "calibrated" and replaced.threshold != 0.9
    assert "(was 0.900, by hand)" in again.stdout


def test_footage_warning_names_the_minimum() -> None:
    assert minimum_footage_hours(1.0) == 1.0 and minimum_footage_hours(0.0) == 0.0
    warning = footage_warning(10 / 60, 1.0)  # 10 minutes at 1 per hour
    assert warning is not None and "10 min of footage" in warning and "at least 60 min" in warning
    assert footage_warning(2.0, 1.0) is None and footage_warning(0.01, 0.0) is None
    assert "at least 10 h" in (footage_warning(1.0, 0.1) or "")


def test_calibrate_needs_a_way_to_score_queries(tmp_path: Path, sample_video: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(f"database: {tmp_path}/q.db\ncameras:\n  - {{id: cam, uri: test://}}\n")
    command = [sys.executable, "-m", "agent.cli", "calibrate", str(config), "--video", str(sample_video),
               "--target-false-alarms-per-hour", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "neither matching.embedder" in result.stderr and "nor pose:" in result.stderr


@pytest.mark.slow
def test_calibrate_sets_cue_query_thresholds_without_clip(
    tmp_path: Path, sample_video: Path, pose_model_dir: Path, ssd_model_dir: Path
) -> None:
    """The demo's set-up (pose cues, no CLIP, queries in the YAML): cue queries are calibrated from
    their cue values on the footage, a query that maps to no cue is named, --camera follows the site's
    cameras (one added at run time here)."""
    from agent.cameras import CameraStore

    database = tmp_path / "state" / "watchword.db"
    store = CameraStore(database)
    store.add({"id": "slow", "uri": "test://", "analysis_fps": 5})  # added at run time
    store.close()
    config = tmp_path / "demo.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        f"cameras:\n  - {{id: sample, uri: '{sample_video}', analysis_fps: 10}}\n"
        f"detector: {{type: ssd-mobilenet, model_dir: '{ssd_model_dir}'}}\n"
        f"pose: {{model_dir: '{pose_model_dir}', export_if_missing: false, interval_s: 1.0,"
        " cues: {still_long_s: 5.0}}\n"
        "queries:\n  - text: someone standing still for a long time\n  - text: a person running\n"
        "  - text: a man in a red hat\n"
    )
    command = [
        sys.executable, "-m", "agent.cli", "calibrate", str(config), "--video", str(sample_video),
        "--target-false-alarms-per-hour", "60", "--min-threshold", "0.01", "--max-frames", "40",
        "--camera", "slow", "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    # 40 frames at the run-time camera's 5 frames/s: 8 s of footage (the YAML camera's 10 would be 4 s)
    assert "8 s of footage" in result.stderr
    assert "not calibrated: query 3 'a man in a red hat': maps to no cue" in result.stderr
    registry = QueryRegistry(database)
    try:
        queries = {q.text: q for q in registry.list_queries()}
    finally:
        registry.close()
    for text in ("someone standing still for a long time", "a person running"):
        threshold = queries[text].threshold
        assert queries[text].threshold_source == "calibrated", result.stdout
        assert threshold is not None and 0.01 <= threshold < 1
    assert queries["a man in a red hat"].threshold is None
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert {int(row[0]) for row in rows if "[set]" in " ".join(row)} == {1, 2}
