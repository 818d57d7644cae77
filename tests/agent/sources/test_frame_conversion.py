"""Frames leave GStreamer as owned BGR arrays, whatever the row padding; sizes fit without upscaling."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from agent.gst import protect_unwinder
from agent.sources.rate import RateLimiter

protect_unwinder()
gi = pytest.importorskip("gi")
gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

from agent.sources.pipeline import ensure_gst, fit_size, sample_to_bgr  # noqa: E402

PAD = 77


def _sample(image: np.ndarray, stride: int, with_meta: bool) -> object:
    height, width, _ = image.shape
    raw = bytearray([PAD]) * (stride * height)
    for row in range(height):
        raw[row * stride : row * stride + width * 3] = image[row].tobytes()
    buffer = Gst.Buffer.new_wrapped(bytes(raw))
    if with_meta:
        GstVideo.buffer_add_video_meta_full(
            buffer,
            GstVideo.VideoFrameFlags.NONE,
            GstVideo.VideoFormat.BGR,
            width,
            height,
            1,
            [0] * 4,
            [stride, 0, 0, 0],
        )
    caps = Gst.Caps.from_string(f"video/x-raw,format=BGR,width={width},height={height},framerate=0/1")
    return Gst.Sample.new(buffer, caps, None, None)


@pytest.mark.parametrize(
    ("width", "stride", "with_meta"),
    [
        (8, 24, False),  # no padding
        (5, 16, False),  # default GStreamer padding: rows rounded up to 4 bytes
        (5, 64, True),  # a decoder's own stride, given by a video meta
    ],
)
def test_row_padding_is_skipped(width: int, stride: int, with_meta: bool) -> None:
    ensure_gst()
    image = np.random.default_rng(0).integers(0, PAD, size=(3, width, 3), dtype=np.uint8)
    frame = sample_to_bgr(_sample(image, stride, with_meta))
    np.testing.assert_array_equal(frame, image)
    assert frame.flags.writeable and frame.flags.c_contiguous and frame.base is None  # owned


def test_non_bgr_caps_are_refused() -> None:
    ensure_gst()
    buffer = Gst.Buffer.new_wrapped(bytes(4 * 4 * 4))
    sample = Gst.Sample.new(
        buffer, Gst.Caps.from_string("video/x-raw,format=RGBA,width=4,height=4"), None, None
    )
    with pytest.raises(Exception, match="expected BGR"):
        sample_to_bgr(sample)


@pytest.mark.parametrize(
    ("native", "par", "box", "expected"),
    [
        ((768, 576), Fraction(1), (384, 1000), (384, 288)),
        ((768, 576), Fraction(1), (1280, 720), (768, 576)),  # never upscaled
        ((1920, 1080), Fraction(1), (640, 640), (640, 360)),
        ((1080, 1920), Fraction(1), (640, 640), (360, 640)),  # portrait
        ((720, 576), Fraction(16, 15), (2000, 2000), (720, 540)),  # wide pixels squeezed, not stretched
        ((720, 480), Fraction(8, 9), (2000, 2000), (640, 480)),  # narrow pixels squeezed
    ],
)
def test_fit_size(
    native: tuple[int, int], par: Fraction, box: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit_size(*native, par, *box) == expected


@pytest.mark.parametrize(("native_fps", "max_fps"), [(10, 5), (30, 5), (25, 10), (30, 7.5), (10, 3)])
def test_rate_limiter_keeps_the_requested_rate_despite_jitter(native_fps: int, max_fps: float) -> None:
    limiter = RateLimiter(max_fps)
    jitter = np.random.default_rng(1).uniform(-0.003, 0.003, size=native_fps * 60)
    kept = sum(limiter.keep(i / native_fps + jitter[i]) for i in range(native_fps * 60))
    assert kept == pytest.approx(max_fps * 60, abs=1)


def test_rate_limiter_never_adds_frames_and_restarts_after_gaps_and_seeks() -> None:
    limiter = RateLimiter(10.0)
    assert all(limiter.keep(i * 0.5) for i in range(10))  # slower input passes untouched
    assert limiter.keep(100.0)  # after a gap: kept, and no burst afterwards
    assert not limiter.keep(100.05)
    assert limiter.keep(100.1)
    assert limiter.keep(0.0)  # timestamps went backwards (a loop or a new stream)
    assert not limiter.keep(0.01)
