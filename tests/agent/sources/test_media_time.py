"""Decisions run on media time: a file's frames carry their pts, a live camera's its wall time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.sources import Source
from agent.sources.config import CameraConfig
from tests.fixtures.sources import camera_config, read_frames

StartSource = Callable[[CameraConfig], Source]


def test_a_file_decides_on_its_pts_however_fast_it_is_read(
    start_source: StartSource, sample_video: Path
) -> None:
    source = start_source(camera_config(str(sample_video)))
    frames = read_frames(source, count=30, timeout_s=30)
    assert not any(f.live for f in frames)
    assert [f.media_time for f in frames] == pytest.approx([i / 10 for i in range(30)], abs=1e-6)
    assert all(f.media_time == f.pts_s for f in frames), "not the wall time they were decoded at"


@pytest.mark.slow
def test_a_live_camera_decides_on_wall_time(start_source: StartSource) -> None:
    source = start_source(camera_config("test://?width=160&height=120&fps=20"))
    frames = read_frames(source, count=10, timeout_s=10)
    assert all(f.live for f in frames)
    assert all(f.media_time == f.wall_time for f in frames)
    assert all(f.pts_s is not None for f in frames), "the pts is there, and not used"
