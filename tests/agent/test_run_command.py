"""``watchword run`` as a user runs it: exit codes, bad configs, signals, a bad camera among good ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="the sample video (Debian opencv-doc) is missing")


REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    """The repo importable from any working directory, output unbuffered."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _watchword(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI from ``cwd`` (a temporary directory: relative data paths land there)."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=_env(),
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "    analysis_fsp: 5\n",
            "cameras[0].analysis_fsp: unknown key 'analysis_fsp'; did you mean 'analysis_fps'?",
        ),
        ("    analysis_fps: fast\n", "cameras[0].analysis_fps: Input should be a valid number"),
        ("    max_width: -3\n", "cameras[0].max_width: Input should be greater than or equal to 16"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, body: str, expected: str) -> None:
    config = _write(tmp_path / "site.yaml", f"cameras:\n  - id: a\n    uri: {SAMPLE}\n{body}")
    result = _watchword("run", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"site.yaml:4: {expected}" in result.stderr


def test_missing_model_file_exits_2(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "site.yaml",
        f"cameras:\n  - id: a\n    uri: {SAMPLE}\ndetector:\n  type: yolo\n  model: {tmp_path}/yolo.pt\n",
    )
    result = _watchword("run", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert f"detector.model: file not found: {tmp_path}/yolo.pt" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = _watchword("run", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot read config" in result.stderr


def test_the_summary_counts_this_runs_alerts_not_the_history(tmp_path: Path, ssd_model_dir: Path) -> None:
    from agent.config import load_config
    from tests.agent.alerts.deciding import DecidingManager
    from tests.agent.alerts.helpers import make_candidate

    config = _write(
        tmp_path / "site.yaml",
        f"state_dir: {tmp_path / 'state'}\n"
        "cameras:\n  - {id: gate, uri: 'test://?fps=5&width=160&height=120'}\n"
        f"detector: {{type: ssd-mobilenet, model_dir: '{ssd_model_dir}'}}\n",
    )
    earlier = DecidingManager(load_config(config).alerts, "site")  # the history: an earlier run's alerts
    earlier.start()
    for track in range(1, 6):
        earlier.submit(make_candidate(track=track, query=1, t=1_000.0 + track))
    earlier.close()
    # No CLIP model, no behaviour cues: this run cannot raise an alert.
    result = _watchword("run", str(config), "--duration", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "alerts: none raised" in result.stdout, result.stdout
    assert "5 raised" not in result.stdout


def test_missing_video_file_exits_2_at_load_naming_the_key(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "site.yaml",
        f"cameras:\n  - id: good\n    uri: {SAMPLE}\n  - id: gone\n    uri: {tmp_path}/no-such-video.mp4\n",
    )
    started = time.monotonic()
    result = _watchword("run", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        f"site.yaml:5: cameras[1].uri: file camera: video file not found: {tmp_path}/no-such-video.mp4"
        in (result.stderr)
    )
    assert "detector" not in result.stderr, "refused before anything loads"
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_bad_camera_does_not_stop_the_others(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)  # a file no decoder reads: this camera fails at run time
    config = _write(
        tmp_path / "site.yaml",
        f"cameras:\n  - id: good\n    uri: {SAMPLE}\n  - id: gone\n    uri: {broken}\n",
    )
    out = tmp_path / "frames.jsonl"
    result = _watchword("run", str(config), "--max-frames", "20", "--jsonl", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records if r["camera"] == "good"] == list(range(20))
    assert {r["camera"] for r in records} == {"good"}
    # each failure is reported, naming the camera
    assert "gone" in result.stdout + result.stderr and "broken.mp4" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_within_5_s_with_valid_jsonl(tmp_path: Path, signum: int) -> None:
    config = _write(
        tmp_path / "site.yaml",
        f"cameras:\n  - id: loop\n    uri: {SAMPLE}\n    loop: true\n  - id: live\n    uri: test://?fps=10\n",
    )
    out = tmp_path / "frames.jsonl"
    videos = tmp_path / "video"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            str(config),
            "--jsonl",
            str(out),
            "--video-out",
            str(videos),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= 20:
                break
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        else:
            pytest.fail("the agent wrote fewer than 20 lines in 90 s")
        sent = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert elapsed < 5.0, f"took {elapsed:.1f} s to stop"
    assert process.returncode == 0, stderr
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is whole, valid JSON
    assert {r["camera"] for r in records} == {"loop", "live"}
    for camera in ("loop", "live"):
        indices = [r["frame"] for r in records if r["camera"] == camera]
        assert indices == sorted(indices)
    # the annotated video was finalised (end of stream sent), so it decodes
    capture = cv2.VideoCapture(str(videos / "loop.mp4"))
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    assert decoded == sum(1 for r in records if r["camera"] == "loop")


def test_corrupt_detector_model_exits_2_after_the_cameras_opened(tmp_path: Path) -> None:
    """The detector loads while the cameras open; when it turns out corrupt, they are stopped and the
    start fails with the reason (a looping file and a live test source: neither ends by itself)."""
    model = tmp_path / "broken.pb"
    model.write_bytes(b"not a tensorflow graph" * 50)
    config = _write(
        tmp_path / "site.yaml",
        f"cameras:\n  - id: loop\n    uri: {SAMPLE}\n    loop: true\n  - id: live\n    uri: test://?fps=10\n"
        f"detector:\n  type: ssd-mobilenet\n  model: {model}\n",
    )
    result = _watchword("run", str(config), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "watchword run: detector:" in result.stderr and "broken.pb" in result.stderr
