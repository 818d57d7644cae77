"""The live status: a rich table on a terminal, log lines otherwise; rich is loaded only when drawn.

Each case runs in a fresh interpreter (a subprocess) whose standard error is a pipe or a real
pseudo-terminal, since whether rich is imported is the point.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console

from agent.health_report import camera_health
from agent.pipeline import CameraCounters, CameraStatus, RunSummary
from agent.sources.base import SourceState, SourceStats
from agent.status import keep_up_warnings, print_summary, status_line

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")

REPORT = textwrap.dedent(
    """
    import logging, sys, time

    from agent.pipeline import CameraCounters, CameraStatus, RunSummary
    from agent.status import StatusReporter, print_summary

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    status = [CameraStatus(None, CameraCounters("gate", frames=7))]
    reporter = StatusReporter(lambda: status, interval_s=0.05)
    reporter.log_once()
    time.sleep(0.5)
    reporter.close()
    print("rich before the summary:", "rich" in sys.modules, flush=True)
    print_summary(RunSummary(cameras=status, duration_s=1.5, stopped_by="max frames reached"))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"}


def test_without_a_terminal_the_status_is_logged_and_rich_waits_for_the_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-c", REPORT], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "status camera=gate state=starting fps=- source=- frames=7" in done.stderr
    assert "rich before the summary: False" in done.stdout
    assert "watchword: 7 frames in 1.5 s (max frames reached)" in done.stdout
    assert "│ gate " in done.stdout


def test_on_a_terminal_the_status_is_a_live_table() -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", REPORT],
        env={**_env(), "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    stdout = process.communicate(timeout=120)[0].decode()
    os.close(controller)
    assert process.returncode == 0, drawn.decode(errors="replace")[-3000:]
    screen = drawn.decode(errors="replace")
    assert "reconnects" in screen and "gate" in screen, screen[-3000:]
    assert "status camera=gate" in screen  # log_once() logs on a terminal too
    assert "rich before the summary: True" in stdout


def _live(fps: float, drops: int, analysed_per_s: float) -> CameraStatus:
    """A running live camera delivering ``fps`` frames/s, of which ``analysed_per_s`` were analysed
    in each of the last 4 seconds."""
    counters = CameraCounters("dock", frames=40)
    now = time.monotonic()
    steps = int(4 * analysed_per_s)
    for i in range(steps + 1):
        counters.frame_analysed(now - 4 + i / analysed_per_s)
    source = SourceStats(
        camera_id="dock", state=SourceState.RUNNING, frames=600, drops=drops, reconnects=0,
        last_frame_age_s=0.1, fps=fps, last_error=None, width=640, height=480,
    )  # fmt: skip
    return CameraStatus(source, counters.snapshot())


def test_the_status_shows_the_analysed_rate_and_warns_when_a_camera_cannot_keep_up() -> None:
    behind = _live(fps=3.0, drops=590, analysed_per_s=1.0)
    assert "fps=1.0 source=3.0 frames=40" in status_line(behind)
    assert keep_up_warnings([behind]) == [
        "camera dock: analysing 1.0 of 3.0 frames/s, 590 dropped: the agent cannot keep up (lower "
        "analysis_fps, max_width/max_height or the number of cameras, or use a faster detector engine)"
    ]
    cameras, problems, _ = camera_health([behind])
    assert (cameras["dock"]["fps"], cameras["dock"]["source_fps"]) == (1.0, 3.0)
    assert "cannot keep up" in cameras["dock"]["falling_behind"] and problems == []
    # keeping up (frames dropped at start do not count), or nothing dropped: no warning
    assert keep_up_warnings([_live(fps=3.0, drops=590, analysed_per_s=3.0)]) == []
    assert keep_up_warnings([_live(fps=3.0, drops=0, analysed_per_s=1.0)]) == []
    assert camera_health([_live(fps=3.0, drops=0, analysed_per_s=2.0)])[0]["dock"]["falling_behind"] is None


def test_the_summary_shows_a_cameras_whole_error() -> None:
    reason = "camera 'gate' (/srv/recordings/2026/06/01/north-entrance/day.mp4): " + "decoder said no " * 12
    counters = CameraCounters("gate", error=reason.strip())
    out = io.StringIO()
    print_summary(RunSummary(cameras=[CameraStatus(None, counters)]), Console(file=out, width=100))
    assert f"camera gate: {reason.strip()}" in out.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.exists(), reason="the detector's conversion is checked on the sample video")
def test_a_live_camera_faster_than_the_detector_is_reported_falling_behind(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        f"state_dir: {tmp_path}/state\n"
        "cameras:\n  - {id: fast, uri: 'test://?pattern=ball&fps=300&width=320&height=240'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", str(config), "--duration", "13"],
        env=_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stderr.splitlines() if "status camera=fast" in x)
    fields = dict(part.split("=", 1) for part in line.split("status ", 1)[1].split())
    assert float(fields["fps"]) < 0.9 * float(fields["source"]), line  # analysed, not delivered
    assert "WARNING" in result.stderr and "camera fast: analysing" in result.stderr
    assert "the agent cannot keep up" in result.stderr
