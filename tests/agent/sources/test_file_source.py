"""File sources read the sample video completely, at the analysis rate and size, with backpressure."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.sources import Source, SourceState
from agent.sources.config import CameraConfig
from tests.fixtures.sources import SAMPLE_FRAMES, camera_config, read_frames, wait_for

StartSource = Callable[[CameraConfig], Source]


def _first_frame_by_opencv(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    ok, image = capture.read()
    capture.release()
    assert ok
    return image


@pytest.mark.slow
def test_every_frame_at_the_native_rate(sample_video: Path, start_source: StartSource) -> None:
    source = start_source(camera_config(sample_video, max_width=800, max_height=800))
    assert not source.is_live
    frames = read_frames(source)

    assert len(frames) == SAMPLE_FRAMES
    assert [f.index for f in frames] == list(range(SAMPLE_FRAMES))
    pts = np.array([f.pts_s for f in frames], dtype=float)
    assert np.all(np.diff(pts) > 0)
    assert np.allclose(np.diff(pts), 0.1, atol=0.002)
    assert all(f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.camera_id == "cam" for f in frames)
    assert source.native_fps == pytest.approx(10.0)

    stats = source.stats()
    assert (stats.state, stats.frames, stats.drops, stats.reconnects) == (
        SourceState.ENDED,
        SAMPLE_FRAMES,
        0,
        0,
    )
    assert (stats.width, stats.height) == (768, 576)
    assert stats.last_error is None
    assert source.finished


@pytest.mark.slow
def test_frames_are_bgr_like_opencv(sample_video: Path, start_source: StartSource) -> None:
    source = start_source(camera_config(sample_video, max_width=800, max_height=800))
    ours = read_frames(source, count=1)[0].image.astype(np.int16)
    reference = _first_frame_by_opencv(sample_video).astype(np.int16)
    same_order = np.abs(ours - reference).mean()
    swapped = np.abs(ours[..., ::-1] - reference).mean()
    assert same_order < 3.0
    assert same_order < swapped


@pytest.mark.slow
def test_analysis_fps_drops_frames_inside_gstreamer(sample_video: Path, start_source: StartSource) -> None:
    source = start_source(camera_config(sample_video, analysis_fps=5))
    frames = read_frames(source)
    assert abs(len(frames) - 398) <= 1
    assert [f.index for f in frames] == list(range(len(frames)))
    gaps = np.diff([f.pts_s for f in frames if f.pts_s is not None])
    assert np.allclose(gaps, 0.2, atol=0.002)
    assert source.stats().drops == 0


@pytest.mark.slow
def test_max_size_scales_down_keeping_the_aspect_ratio(sample_video: Path, start_source: StartSource) -> None:
    source = start_source(camera_config(sample_video, max_width=384, max_height=720))
    frames = read_frames(source)
    assert len(frames) == SAMPLE_FRAMES
    assert {f.image.shape for f in frames} == {(288, 384, 3)}
    stats = source.stats()
    assert (stats.width, stats.height) == (384, 288)
    reference = cv2.resize(_first_frame_by_opencv(sample_video), (384, 288), interpolation=cv2.INTER_AREA)
    assert np.abs(frames[0].image.astype(np.int16) - reference).mean() < 4.0


@pytest.mark.slow
def test_loop_keeps_counting(sample_video: Path, start_source: StartSource) -> None:
    source = start_source(camera_config(sample_video, loop=True, max_width=192, max_height=192))
    frames = read_frames(source, count=SAMPLE_FRAMES + 150)
    assert len(frames) == SAMPLE_FRAMES + 150
    assert [f.index for f in frames] == list(range(SAMPLE_FRAMES + 150))
    assert np.all(np.diff([f.pts_s for f in frames]) > 0)  # timestamps continue across the loop
    np.testing.assert_array_equal(frames[SAMPLE_FRAMES].image, frames[0].image)  # back at the start
    assert source.stats().state == SourceState.RUNNING
    assert not source.finished


@pytest.mark.slow
def test_a_slow_reader_blocks_the_file_instead_of_dropping(
    sample_video: Path, start_source: StartSource
) -> None:
    source = start_source(camera_config(sample_video, queue_size=2, max_width=192, max_height=192))
    assert wait_for(lambda: source.stats().queued == 2, timeout_s=10)
    time.sleep(0.5)
    stats = source.stats()
    assert stats.frames == 2  # the producer waits for room
    assert stats.drops == 0
    frames = read_frames(source)
    assert len(frames) == SAMPLE_FRAMES
    assert source.stats().drops == 0


def test_missing_file_fails_clearly(tmp_path: Path, start_source: StartSource) -> None:
    missing = tmp_path / "nope.mp4"
    source = start_source(camera_config(missing, camera_id="lobby"))
    assert wait_for(lambda: source.finished, timeout_s=5)
    assert source.read(timeout_s=0.1) is None
    stats = source.stats()
    assert stats.state == SourceState.FAILED
    assert stats.last_error is not None
    assert "'lobby'" in stats.last_error
    assert str(missing) in stats.last_error
    assert "not found" in stats.last_error


def test_a_file_that_is_not_a_video_fails_and_another_camera_continues(
    tmp_path: Path, sample_video: Path, start_source: StartSource
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("these are not the frames you are looking for\n" * 100)
    broken = start_source(camera_config(notes, camera_id="broken"))
    good = start_source(camera_config(sample_video, camera_id="good", max_width=192, max_height=192))

    frames = read_frames(good)
    assert len(frames) == SAMPLE_FRAMES
    assert wait_for(lambda: broken.finished, timeout_s=10)
    stats = broken.stats()
    assert stats.state == SourceState.FAILED
    assert stats.last_error is not None
    assert "'broken'" in stats.last_error and str(notes) in stats.last_error
    assert stats.frames == 0


def test_stop_returns_within_its_timeout_while_the_producer_is_blocked(
    sample_video: Path, start_source: StartSource
) -> None:
    source = start_source(camera_config(sample_video, queue_size=1))
    assert wait_for(lambda: source.stats().queued == 1, timeout_s=10)
    started = time.monotonic()
    source.stop(timeout_s=1.0)
    assert time.monotonic() - started < 1.2
    assert source.stats().state == SourceState.STOPPED
    assert not source.finished  # one frame is still queued
    assert source.read(timeout_s=0.1) is not None
    assert source.finished
    assert source.read(timeout_s=0.1) is None
