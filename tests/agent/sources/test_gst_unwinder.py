"""With GStreamer running, a C++ exception in another extension is still a Python exception.

Without ``agent.gst.protect_unwinder`` this script dies with SIGSEGV/SIGABRT on Debian 12 (libunwind,
pulled in by GStreamer, takes over ``_Unwind_Resume``), so the agent would crash on the first
onnxruntime or onnx error. It runs in a subprocess because the failure mode is a dead process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gi")

SCRIPT = """
import cv2  # loaded before GStreamer, as the agent does
from agent.sources.config import CameraConfig
from agent.sources import open_source

source = open_source(CameraConfig(id="t", uri="test://?fps=30&width=64&height=48"))
source.start()
assert source.read(timeout_s=10) is not None, "no frame from the test pattern"
import onnxruntime

try:
    onnxruntime.InferenceSession(b"\\x08\\x07not a model")
except Exception as exc:
    print("raised", type(exc).__name__)
source.stop()
"""


def test_onnxruntime_error_is_an_exception_not_a_crash() -> None:
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=repo, check=False
    )
    assert result.returncode == 0, f"process died with {result.returncode}: {result.stderr[-2000:]}"
    assert "raised" in result.stdout
