"""Connections that never finish their request are closed, and the API holds no more connections
than leave a reserve of file descriptors: a real uvicorn server, raw sockets to 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import logging
import resource
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from agent.api.config import ApiConfig
from agent.api.connections import LISTEN_BACKLOG, MIN_CONNECTIONS, connection_cap
from agent.api.server import ApiServer
from agent.file_limits import open_file_count, raise_open_file_limit
from agent.log_limits import RepeatLimitFilter

TIMEOUT_S = 1.0
CAP = 8
GIVE_UP_S = 10.0  # far past the timeout: a connection still open then was never going to be closed


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body())

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(600):  # 30 s at most
                if await request.is_disconnected():
                    return
                yield b"frame\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


@pytest.fixture
def server() -> Iterator[ApiServer]:
    api = ApiServer(_app(), "127.0.0.1", 0, ApiConfig(request_timeout_s=TIMEOUT_S, max_connections=CAP))
    api.start()
    yield api
    api.stop()


def _connect(server: ApiServer, first: bytes) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    sock.sendall(first)
    return sock


def _seconds_until_closed(sock: socket.socket, drip: bytes = b"", every_s: float = 0.25) -> float | None:
    """Send ``drip`` every ``every_s`` until the server closes the connection; the seconds that
    took, or None if it was still open after :data:`GIVE_UP_S`."""
    started = time.monotonic()
    sock.settimeout(every_s)
    while time.monotonic() - started < GIVE_UP_S:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            try:
                if drip:
                    sock.sendall(drip)
            except OSError:
                return time.monotonic() - started
        except OSError:
            return time.monotonic() - started
    return None


def _get_livez(server: ApiServer, timeout_s: float = 5.0) -> int:
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_a_request_head_sent_one_line_at_a_time_is_cut_off_after_the_timeout(server: ApiServer) -> None:
    sock = _connect(server, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        took = _seconds_until_closed(sock, drip=b"X-Slow: 1\r\n")
    finally:
        sock.close()
    assert took is not None, f"a never-ending request head was still open after {GIVE_UP_S} s"
    assert TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 3.0
    assert server.connections.closed["request_timeout"] == 1 and server.connections.open == 0


def test_a_body_that_never_arrives_is_cut_off_after_the_timeout(server: ApiServer) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
    sock = _connect(server, head + b"x" * 10)
    try:
        took = _seconds_until_closed(sock, drip=b"x")
    finally:
        sock.close()
    assert took is not None and TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 3.0


def test_requests_that_arrive_are_answered_on_one_kept_alive_connection(server: ApiServer) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        statuses = []
        for _ in range(3):
            connection.request("GET", "/livez")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            if len(statuses) == 1:
                first = connection.sock
        assert statuses == [200, 200, 200] and connection.sock is first  # not reconnected
    finally:
        connection.close()
    assert server.connections.closed == {"request_timeout": 0, "evicted": 0, "refused": 0}


def test_slow_clients_beyond_the_cap_do_not_keep_a_prompt_client_out(server: ApiServer) -> None:
    slow = [_connect(server, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(4 * CAP)]
    try:
        started = time.monotonic()
        assert _get_livez(server) == 200
        assert time.monotonic() - started < 2.0
        assert server.connections.open <= CAP
        assert server.connections.closed["evicted"] >= 3 * CAP
        assert server.connections.closed["refused"] == 0
    finally:
        for sock in slow:
            sock.close()


def test_connections_busy_with_a_stream_are_kept_and_a_new_one_is_refused(server: ApiServer) -> None:
    streams = [_connect(server, b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(CAP)]
    try:
        for sock in streams:  # every stream has started: each connection is busy, none is waiting
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        extra = _connect(server, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            assert _seconds_until_closed(extra) is not None
        finally:
            extra.close()
        assert server.connections.closed["refused"] == 1 and server.connections.closed["evicted"] == 0
        for sock in streams:  # still streaming
            assert b"frame" in sock.recv(65536)
    finally:
        for sock in streams:
            sock.close()


def test_the_numbers_are_exported_as_metrics(server: ApiServer) -> None:
    sock = _connect(server, b"GET /livez HTTP/1.1\r\n")
    try:
        assert _seconds_until_closed(sock) is not None
    finally:
        sock.close()
    text = "\n".join(metric.render() for metric in server.metrics())
    assert f"watchword_api_connections_max {CAP}" in text
    assert 'watchword_api_connections_closed_total{reason="request_timeout"} 1' in text


def test_uvicorn_logs_through_the_agents_handlers(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's own records reach the root logger's handlers, which redact and rate-limit them."""
    with caplog.at_level(logging.WARNING):
        sock = _connect(server, b"NOT HTTP AT ALL\r\n\r\n")
        try:
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
        finally:
            sock.close()
    assert any(record.name.startswith("uvicorn") for record in caplog.records)


@pytest.fixture
def file_limit() -> Iterator[tuple[int, int]]:
    """The test process's ``RLIMIT_NOFILE``, put back afterwards."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_soft_file_limit_is_raised_to_the_hard_one(file_limit: tuple[int, int]) -> None:
    _, hard = file_limit
    if hard != resource.RLIM_INFINITY and hard < 300:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    before, after = raise_open_file_limit()
    assert before == 256 and after > 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == after


def test_the_connection_cap_keeps_the_reserve_under_the_file_limit(file_limit: tuple[int, int]) -> None:
    in_use = open_file_count()
    if in_use is None:
        pytest.skip("no /proc/self/fd here")
    reserved, room = 128, 40
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + reserved + LISTEN_BACKLOG + room, file_limit[1]))
    cap, sizing = connection_cap(1000, reserved)
    assert room - 5 <= cap <= room and f"{reserved} reserved" in sizing
    assert connection_cap(10, reserved)[0] == 10  # api.max_connections, where the limit allows more
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 16, file_limit[1]))
    cap, sizing = connection_cap(1000, reserved)
    assert cap == MIN_CONNECTIONS and "raise it" in sizing


def test_a_flood_of_one_warning_costs_a_few_lines_and_a_count() -> None:
    now = [0.0]
    limit = RepeatLimitFilter(burst=5, window_s=60.0, clock=lambda: now[0])

    def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("asyncio", level, __file__, 1, message, None, None)

    passed = [
        limit.filter(record(f"socket.accept() out of system resource\nsocket fd={fd}")) for fd in range(1000)
    ]
    assert sum(passed) == 5
    assert all(limit.filter(record("status camera=x", logging.INFO)) for _ in range(100))
    assert limit.filter(record("another error"))  # another kind has its own budget
    now[0] = 61.0
    later = record("socket.accept() out of system resource\nsocket fd=7")
    assert limit.filter(later)
    assert "[and 995 more like this not logged]" in later.getMessage()
