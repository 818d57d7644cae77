"""Fixtures for the detector tests: the sample video, and a guard against network and pip use."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

SAMPLE_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def read_frames(count: int) -> list[np.ndarray]:
    """The first ``count`` frames of the sample video (768x576 BGR), or skip when it is not installed."""
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"sample video {SAMPLE_VIDEO} missing: apt-get install opencv-doc")
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image)
    finally:
        capture.release()
    assert len(frames) == count, f"{SAMPLE_VIDEO} has only {len(frames)} frames"
    return frames


@pytest.fixture(scope="session")
def sample_frames() -> list[np.ndarray]:
    return read_frames(100)


@pytest.fixture(autouse=True)
def no_network_or_pip(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that opens a connection, resolves a host name or runs pip."""

    def refuse_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse_network)
    monkeypatch.setattr(socket, "create_connection", refuse_network)
    monkeypatch.setattr(socket.socket, "connect", refuse_network)
    for name in ("check_output", "check_call", "run", "Popen"):
        original = getattr(subprocess, name)

        def guarded(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            command = args[0] if args else kwargs.get("args", "")
            text = " ".join(map(str, command)) if isinstance(command, (list, tuple)) else str(command)
            if "pip" in text.split() or " pip " in f" {text} ":
                raise AssertionError(f"package install attempted: {text}")
            return _original(*args, **kwargs)

        monkeypatch.setattr(subprocess, name, guarded)
    yield
