"""The live status: a rich table on a terminal, log lines otherwise; rich is loaded only when drawn.

Each case runs in a fresh interpreter (a subprocess) whose standard error is a pipe or a real
pseudo-terminal, since whether rich is imported is the point.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

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
    assert "status camera=gate state=starting fps=- frames=7" in done.stderr
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
