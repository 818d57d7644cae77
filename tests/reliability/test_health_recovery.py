"""/health follows a real RTSP camera through an outage: degraded with a redacted error while it is
down, and ok with no leftover error once it is back."""

from __future__ import annotations

import threading

import pytest

from agent.health_report import camera_health
from agent.pipeline import CameraCounters, CameraStatus
from agent.sources import SourceState, open_source
from tests.fixtures.rtsp_server import RtspServer
from tests.fixtures.sources import camera_config, wait_for


@pytest.mark.slow
def test_a_recovered_camera_no_longer_reports_its_old_error(rtsp_server: RtspServer) -> None:
    url = rtsp_server.url.replace("rtsp://", "rtsp://admin:hunter2@", 1)
    camera = camera_config(
        url,
        camera_id="door",
        stall_timeout_s=2.0,
        connect_timeout_s=3.0,
        reconnect={"initial_s": 0.3, "max_s": 1.0},
    )
    before = camera_health([CameraStatus(None, CameraCounters("door"))])
    assert before[0]["door"]["state"] == "starting" and before[1] == [] and before[2]  # not "failed"

    source = open_source(camera)
    source.start()
    stop = threading.Event()
    reader = threading.Thread(
        target=lambda: [source.read(0.05) for _ in iter(stop.is_set, True)], daemon=True
    )
    reader.start()

    def health() -> tuple[dict, list[str], bool]:
        return camera_health([CameraStatus(source.stats(), CameraCounters("door"))])

    try:
        assert wait_for(lambda: source.stats().state == SourceState.RUNNING, timeout_s=30), source.stats()
        cameras, problems, _ = health()
        assert cameras["door"]["error"] is None and problems == []

        rtsp_server.stop()
        assert wait_for(lambda: source.stats().state == SourceState.RECONNECTING, timeout_s=10), (
            source.stats()
        )
        cameras, problems, _ = health()
        assert cameras["door"]["state"] == "reconnecting" and problems
        assert cameras["door"]["error"] and "hunter2" not in cameras["door"]["error"] + "".join(problems)

        rtsp_server.start()
        assert wait_for(lambda: source.stats().state == SourceState.RUNNING, timeout_s=30), source.stats()
        assert source.stats().last_error is not None  # the source remembers; /health does not show it
        cameras, problems, _ = health()
        assert cameras["door"]["error"] is None and problems == []
    finally:
        stop.set()
        reader.join(5)
        source.stop(timeout_s=2.0)
