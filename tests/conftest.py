"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.rtsp_server import RtspServer, unavailable_reason


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    """A running RTSP server on 127.0.0.1 serving the sample video (384x288 H.264) at ``.url``.

    ``stop()`` and ``start()`` take it down and bring it back on the same port. Skips the test
    when gst-rtsp-server, openh264enc or the sample video is missing.
    """
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with RtspServer(width=384, height=288) as server:
        yield server
