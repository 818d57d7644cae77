"""Live sources (test patterns, MJPEG over HTTP): rate, size, drop-oldest, stall watchdog, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from agent.sources import Source, SourceState, open_source
from agent.sources.config import CameraConfig
from agent.sources.pipeline import CameraPipeline
from agent.types import Frame
from tests.fixtures.mjpeg_server import MjpegServer
from tests.fixtures.rtsp_server import free_port
from tests.fixtures.sources import camera_config, read_frames, wait_for

StartSource = Callable[[CameraConfig], Source]


def _read_for(source: Source, seconds: float) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = source.read(timeout_s=0.05)
        if frame is not None:
            frames.append(frame)
    return frames


@pytest.mark.slow
def test_test_pattern_delivers_at_its_rate(start_source: StartSource) -> None:
    source = start_source(camera_config("test://?pattern=ball&width=320&height=240&fps=20"))
    assert source.is_live
    assert read_frames(source, count=1, timeout_s=5)  # running
    frames = _read_for(source, 2.0)
    assert 28 <= len(frames) <= 52
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))
    assert np.all(np.diff([f.pts_s for f in frames]) > 0)
    assert {f.image.shape for f in frames} == {(240, 320, 3)}
    stats = source.stats()
    assert stats.state == SourceState.RUNNING
    assert stats.fps == pytest.approx(20, rel=0.3)
    assert stats.last_frame_age_s is not None and stats.last_frame_age_s < 0.5
    assert source.native_fps == pytest.approx(20)


@pytest.mark.slow
def test_analysis_fps_and_max_size_apply_to_live_sources(start_source: StartSource) -> None:
    camera = camera_config(
        "test://?pattern=smpte&width=1280&height=720&fps=20", analysis_fps=5, max_width=640, max_height=640
    )
    source = start_source(camera)
    assert read_frames(source, count=1, timeout_s=5)
    frames = _read_for(source, 2.0)
    assert 7 <= len(frames) <= 13
    assert np.allclose(np.diff([f.pts_s for f in frames]), 0.2, atol=0.01)
    assert {f.image.shape for f in frames} == {(360, 640, 3)}


@pytest.mark.slow
def test_a_reader_that_falls_behind_gets_the_newest_frames_and_drops_are_counted(
    start_source: StartSource,
) -> None:
    source = start_source(camera_config("test://?width=160&height=120&fps=30", queue_size=3))
    assert wait_for(lambda: source.stats().frames >= 30, timeout_s=5)
    stats = source.stats()
    assert stats.queued == 3  # bounded
    assert stats.drops >= stats.frames - 4 > 20
    frames = [source.read(timeout_s=1.0) for _ in range(3)]
    indices = [f.index for f in frames if f is not None]
    assert len(indices) == 3
    assert indices == list(range(indices[0], indices[0] + 3))
    assert indices[0] >= stats.frames - 4  # the newest, not the oldest


def test_stop_returns_within_its_timeout(start_source: StartSource) -> None:
    source = start_source(camera_config("test://?width=160&height=120&fps=30", queue_size=2))
    assert read_frames(source, count=3, timeout_s=5)
    started = time.monotonic()
    source.stop(timeout_s=1.0)
    assert time.monotonic() - started < 1.2
    assert source.stats().state == SourceState.STOPPED
    while source.read(timeout_s=0.1) is not None:
        pass
    assert source.finished


@pytest.mark.slow
def test_mjpeg_over_http_at_native_and_limited_rates(start_source: StartSource) -> None:
    with MjpegServer(fps=10) as server:
        native = start_source(camera_config(server.url, camera_id="native"))
        limited = start_source(camera_config(server.url, camera_id="limited", analysis_fps=4))
        assert read_frames(native, count=1, timeout_s=10) and read_frames(limited, count=1, timeout_s=10)
        native_frames: list[Frame] = []
        limited_frames: list[Frame] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for source, frames in ((native, native_frames), (limited, limited_frames)):
                frame = source.read(timeout_s=0.02)
                if frame is not None:
                    frames.append(frame)
    assert 22 <= len(native_frames) <= 36
    assert 8 <= len(limited_frames) <= 15  # variable-rate stream, limited by timestamp
    assert {f.image.shape for f in native_frames} == {(240, 320, 3)}
    levels = [int(f.image.mean()) for f in native_frames]
    assert len(set(levels)) > 20  # distinct frames, not repeats


@pytest.mark.slow
def test_stall_watchdog_restarts_a_silent_camera(start_source: StartSource) -> None:
    with MjpegServer(fps=10) as server:
        camera = camera_config(
            server.url, stall_timeout_s=1.0, connect_timeout_s=10, reconnect={"initial_s": 0.2, "max_s": 0.5}
        )
        source = start_source(camera)
        assert read_frames(source, count=5, timeout_s=10)
        server.paused.set()
        assert wait_for(lambda: source.stats().reconnects >= 1, timeout_s=5)
        stats = source.stats()
        assert stats.last_error is not None and "no frame for" in stats.last_error
        assert stats.state == SourceState.RECONNECTING
        before = stats.frames
        server.paused.clear()
        assert wait_for(lambda: source.stats().frames > before + 5, timeout_s=10)
        assert source.stats().state == SourceState.RUNNING
        assert server.connections >= 2


@pytest.mark.slow
def test_unreachable_rtsp_camera_reconnects_while_another_continues(start_source: StartSource) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/nothing-here"
    camera = camera_config(
        url, camera_id="door", connect_timeout_s=2, reconnect={"initial_s": 0.2, "max_s": 0.4}
    )
    door = start_source(camera)
    pattern = start_source(camera_config("test://?width=160&height=120&fps=20", camera_id="yard"))
    frames = _read_for(pattern, 2.0)
    assert len(frames) >= 25
    assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + len(frames)))
    stats = door.stats()
    assert stats.state in (SourceState.RECONNECTING, SourceState.STARTING)
    assert stats.reconnects >= 1
    assert stats.frames == 0
    assert stats.last_error is not None and "'door'" in stats.last_error and url in stats.last_error
    assert not door.finished  # live cameras keep trying
    assert pattern.stats().drops == 0


def test_stop_returns_within_its_timeout_even_when_gstreamer_hangs(
    start_source: StartSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def hang(self: CameraPipeline) -> None:  # a pipeline that never reaches NULL
        release.wait(30)

    monkeypatch.setattr(CameraPipeline, "close", hang)
    source = start_source(camera_config("test://?width=160&height=120&fps=30"))
    try:
        assert read_frames(source, count=2, timeout_s=5)
        started = time.monotonic()
        source.stop(timeout_s=0.5)
        assert time.monotonic() - started < 0.8
        assert source.stats().state == SourceState.STOPPED
    finally:
        release.set()


def test_stop_before_start() -> None:
    source = open_source(camera_config("test://"))
    source.stop(timeout_s=0.1)
    assert source.finished
    assert source.stats().state == SourceState.STOPPED
    source.start()  # a stopped source stays stopped
    assert source.read(timeout_s=0.1) is None
