"""Fixtures for the source tests: the sample video, and sources that are always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.sources import Source, open_source
from agent.sources.config import CameraConfig
from tests.fixtures.sources import SAMPLE_VIDEO

pytest.importorskip("gi", reason="PyGObject is not installed")


@pytest.fixture
def sample_video() -> Path:
    if not SAMPLE_VIDEO.is_file():
        pytest.skip(f"sample video {SAMPLE_VIDEO} missing: apt-get install opencv-doc")
    return SAMPLE_VIDEO


@pytest.fixture
def start_source() -> Iterator[Callable[[CameraConfig], Source]]:
    """Open and start a source; every source started this way is stopped after the test."""
    sources: list[Source] = []

    def start(camera: CameraConfig) -> Source:
        source = open_source(camera)
        sources.append(source)
        source.start()
        return source

    yield start
    for source in sources:
        source.stop(timeout_s=2.0)
