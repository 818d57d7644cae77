"""HLS over HTTP: a playlist and H.264 segments made by GStreamer's hlssink, served on 127.0.0.1.

(hlssink2 is not used to make the stream: on Debian 12's GStreamer 1.22 its gst-launch pipeline
hangs at end of stream in about one run in three.)"""

from __future__ import annotations

import functools
import itertools
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.sources import Source, SourceState
from agent.sources.config import CameraConfig
from tests.fixtures.sources import camera_config, read_frames

StartSource = Callable[[CameraConfig], Source]
SECONDS, FPS = 6, 15


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hls_url(tmp_path: Path) -> Iterator[str]:
    """A 6 s, 320x240, 15 frames/s H.264 HLS stream in 1 s segments, served over HTTP."""
    if shutil.which("gst-launch-1.0") is None:
        pytest.skip("gst-launch-1.0 is missing: apt-get install gstreamer1.0-tools")
    pipeline = (
        f"videotestsrc num-buffers={SECONDS * FPS} pattern=ball ! video/x-raw,width=320,height=240,"
        f"framerate={FPS}/1 ! videoconvert ! openh264enc gop-size={FPS} ! h264parse ! mpegtsmux ! hlssink "
        f"target-duration=1 playlist-length=0 max-files=0 playlist-location={tmp_path}/live.m3u8 "
        f"location={tmp_path}/seg%05d.ts"
    )
    result = subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], capture_output=True, timeout=60)
    if not (tmp_path / "live.m3u8").is_file():
        pytest.skip(f"could not make an HLS stream here: {result.stderr.decode(errors='replace')[-300:]}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_hls_playlist_is_decoded_scaled_and_rate_limited(start_source: StartSource, hls_url: str) -> None:
    source = start_source(camera_config(hls_url, analysis_fps=5, max_width=160, max_height=160))
    assert source.is_live
    frames = read_frames(source, count=20, timeout_s=30)
    assert len(frames) == 20, source.stats()
    assert {f.image.shape for f in frames} == {(120, 160, 3)}, "scaled to fit 160x160, aspect kept"
    assert [f.index for f in frames] == list(range(20))
    # 5 of every 15 frames are kept: consecutive kept frames are ~0.2 s apart in stream time
    stamps = [f.pts_s for f in frames]
    assert None not in stamps
    gaps = [b - a for a, b in itertools.pairwise(s for s in stamps if s is not None)]
    assert all(0.1 < gap < 0.35 for gap in gaps), gaps
    assert source.stats().state in {SourceState.RUNNING, SourceState.RECONNECTING}
