"""An RTSP camera survives its server going away, while a file camera beside it runs without a gap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agent.sources import Source, SourceState
from agent.sources.config import CameraConfig
from agent.types import Frame
from tests.fixtures.rtsp_server import RtspServer
from tests.fixtures.sources import camera_config, wait_for

StartSource = Callable[[CameraConfig], Source]


class Reader:
    """Reads two sources round-robin in a thread, like the runner, recording when each frame arrived."""

    def __init__(self, live: Source, file: Source) -> None:
        self.live = live
        self.file = file
        self.live_frames: list[tuple[float, Frame]] = []
        self.file_frames: list[tuple[float, Frame]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.live.read(timeout_s=0.02)
            if frame is not None:
                self.live_frames.append((time.monotonic(), frame))
            frame = self.file.read(timeout_s=0.0)  # at most one per turn: paces the file
            if frame is not None:
                self.file_frames.append((time.monotonic(), frame))

    def live_after(self, moment: float) -> int:
        return sum(1 for received, _ in self.live_frames if received > moment)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.mark.slow
def test_rtsp_reconnects_after_server_restart_while_a_file_camera_runs_on(
    rtsp_server: RtspServer, sample_video: Path, start_source: StartSource
) -> None:
    live = start_source(
        camera_config(
            rtsp_server.url,
            camera_id="street",
            stall_timeout_s=2.0,
            connect_timeout_s=3.0,
            latency_ms=100,
            reconnect={"initial_s": 0.3, "max_s": 1.0},
        )
    )
    file = start_source(
        camera_config(sample_video, camera_id="archive", loop=True, max_width=192, max_height=192)
    )
    with Reader(live, file) as reader:
        assert wait_for(lambda: len(reader.live_frames) >= 10, timeout_s=30), live.stats()
        assert live.stats().state == SourceState.RUNNING

        rtsp_server.stop()
        down = time.monotonic()
        assert wait_for(lambda: live.stats().state == SourceState.RECONNECTING, timeout_s=4.0), live.stats()
        time.sleep(max(0.0, down + 5.0 - time.monotonic()))
        outage = live.stats()
        rtsp_server.start()
        up = time.monotonic()

        assert wait_for(lambda: reader.live_after(up) >= 10, timeout_s=30), live.stats()

    assert outage.reconnects >= 1
    assert outage.last_error is not None and "'street'" in outage.last_error
    stats = live.stats()
    assert stats.state == SourceState.RUNNING
    assert stats.drops == 0
    live_indices = [frame.index for _, frame in reader.live_frames]
    assert live_indices == list(range(len(live_indices)))  # one count across the reconnect
    assert sum(1 for received, _ in reader.live_frames if down + 1.0 < received < up) == 0

    file_times = np.array([received for received, _ in reader.file_frames])
    file_indices = [frame.index for _, frame in reader.file_frames]
    assert file_indices == list(range(len(file_indices)))
    assert file.stats().drops == 0
    during_outage = ((file_times > down) & (file_times < up)).sum()
    assert during_outage >= 40  # about 5 s at 20 or more frames/s
    assert np.diff(file_times).max() < 1.0  # never a gap
