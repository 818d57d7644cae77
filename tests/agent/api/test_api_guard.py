"""The API's front door on a real uvicorn server: auth before the body, 413, host check, 4xx not 5xx."""

from __future__ import annotations

import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.queries import QueryRegistry

TOKEN = "guard-token-0123456789abcdef"


def _context(tmp_path: Path, token: str | None, health: dict[str, Any] | None = None) -> ApiContext:
    evidence = tmp_path / "evidence"
    (evidence / "a1").mkdir(parents=True, exist_ok=True)
    (evidence / "a1" / "crop.jpg").write_bytes(b"\xff\xd8jpeg")
    return ApiContext(
        registry=QueryRegistry(tmp_path / "w.db"),
        token=token,
        health=lambda: health or {"status": "ok"},
        metrics=lambda: "",
        evidence_dir=evidence,
        cameras=lambda: {"dock-1", "gate"},
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    api = ApiServer(create_app(_context(tmp_path, TOKEN)), "127.0.0.1", 0)
    api.start()
    yield api
    api.stop()


def raw_request(server: ApiServer, head: str, body: bytes = b"", timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, CRLF-joined by the caller) and ``body`` over a socket."""
    with socket.create_connection((server.host, server.port), timeout=timeout_s) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        status = int(head_bytes.split(b" ", 2)[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest


def _post_head(server: ApiServer, path: str, length: int, token: str | None, host: str | None = None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{server.port}'}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines)


def test_a_huge_body_is_refused_from_its_headers_before_a_byte_is_read(server: ApiServer) -> None:
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    # 400 MB announced, nothing sent: the answer must come from the headers alone.
    status, body = raw_request(server, _post_head(server, "/queries", 400 * 1024**2, token=None))
    assert status == 401 and b"bearer" in body
    status, body = raw_request(server, _post_head(server, "/queries", 400 * 1024**2, token=TOKEN))
    assert status == 413 and b"request body over" in body
    assert time.monotonic() - started < 10  # it did not wait for 400 MB that never came
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib < 50 * 1024


def test_a_chunked_body_over_the_limit_is_cut_off_with_413(server: ApiServer) -> None:
    piece = b"x" * 32 * 1024
    chunks = b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    head = "\r\n".join(
        [
            "POST /queries HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
            f"Authorization: Bearer {TOKEN}",
        ]
    )
    status, _ = raw_request(server, head, chunks)
    assert status == 413


def _get(
    server: ApiServer, path: str, token: str | None = TOKEN, host: str | None = None
) -> tuple[int, bytes]:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{server.port}'}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return raw_request(server, "\r\n".join(lines))


def _post_json(server: ApiServer, path: str, text: str) -> tuple[int, Any]:
    body = text.encode()
    status, raw = raw_request(server, _post_head(server, path, len(body), TOKEN), body)
    return status, json.loads(raw) if raw else None


def test_docs_are_behind_the_token_and_no_page_loads_a_cdn(server: ApiServer) -> None:
    assert _get(server, "/openapi.json", token=None)[0] == 401
    assert _get(server, "/openapi.json")[0] == 200
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        status, body = _get(server, page)
        assert status == 404 and b"cdn" not in body.lower()
    assert _get(server, "/livez", token=None) == (200, b'{"status":"alive"}')


@pytest.mark.parametrize(
    ("method", "path", "text", "expected"),
    [
        ("POST", "/queries", '{"text": "a person falling", "cooldown_s": NaN}', 422),
        ("POST", "/queries", '{"text": "a person falling", "threshold": Infinity}', 422),
        ("POST", "/queries", '{"text": "x", "normal_prompts": ' + json.dumps(["p"] * 33) + "}", 422),
        ("POST", "/queries", '{"text": "x", "cameras": ["nope"]}', 422),
        ("POST", "/queries", '{"text": "x", "cameras": ["' + "c" * 65 + '"]}', 422),
        ("GET", f"/queries/{2**70}", "", 422),
        ("GET", f"/alerts?offset={2**64}", "", 422),
        ("GET", "/alerts?since=nan", "", 422),
        ("GET", "/alerts/a1/evidence/crop.jpg%00.txt", "", 404),
        ("GET", "/queries/12345", "", 404),
    ],
)
def test_hostile_input_is_a_4xx_never_a_500(
    server: ApiServer, method: str, path: str, text: str, expected: int
) -> None:
    if method == "POST":
        status, body = _post_json(server, path, text)
        assert "NaN" not in json.dumps(body)
    else:
        status, _ = _get(server, path)
    assert status == expected


def test_query_text_with_an_emoji_zwj_sequence_is_accepted(server: ApiServer) -> None:
    text = "a person waving \U0001f468\u200d\U0001f469\u200d\U0001f467 near gate"
    status, body = _post_json(server, "/queries", json.dumps({"text": text, "cameras": ["gate"]}))
    assert status == 201 and body["text"] == text
    status, body = _post_json(server, "/queries", json.dumps({"text": "evil \u202etxet"}))
    assert status == 422 and "U+202E" in body["detail"][0]["msg"]


def test_tokenless_loopback_api_answers_only_loopback_host_names(tmp_path: Path) -> None:
    api = ApiServer(create_app(_context(tmp_path, None)), "127.0.0.1", 0)
    api.start()
    try:
        for host in (f"127.0.0.1:{api.port}", f"localhost:{api.port}", f"[::1]:{api.port}"):
            assert _get(api, "/queries", token=None, host=host)[0] == 200
        # A page on attacker.example whose DNS name was rebound to 127.0.0.1 sends its own Host.
        status, body = _get(api, "/queries", token=None, host=f"attacker.example:{api.port}")
        assert status == 400 and b"loopback" in body
        # Host is parsed strictly (RFC 9110: a name or address, then at most ":" and digits), so no
        # spelling that another parser reads as some other host passes as a loopback name.
        for host in (
            "localhost:1@evil.example",
            "localhost@evil.example",
            "127.0.0.1:80@evil.example:80",
            "localhost:80:80",
            "localhost:http",
            "localhost:",
            "[::1]@evil.example",
            "[::1]:80x",
            "localhost/evil",
            "user@localhost",
        ):
            assert _get(api, "/queries", token=None, host=host)[0] == 400, host
    finally:
        api.stop()


def test_health_is_503_when_degraded(tmp_path: Path) -> None:
    degraded = {"status": "degraded", "problems": ["sink webhook: 2 dead letters"]}
    api = ApiServer(create_app(_context(tmp_path, TOKEN, degraded)), "127.0.0.1", 0)
    api.start()
    try:
        status, body = _get(api, "/health", token=None)
        assert status == 503 and json.loads(body)["problems"] == degraded["problems"]
        assert _get(api, "/livez", token=None)[0] == 200
    finally:
        api.stop()


def test_environment_token_minimum_and_empty_means_unset(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pydantic import ValidationError

    from agent.api.config import TOKEN_ENV, ApiConfig

    monkeypatch.setenv(TOKEN_ENV, "x")
    with pytest.raises(ValidationError, match="at least 16"):
        ApiConfig(enabled=True, host="0.0.0.0")
    monkeypatch.setenv(TOKEN_ENV, "")
    with pytest.raises(ValidationError, match="needs a token"):
        ApiConfig(enabled=True, host="0.0.0.0")
    with caplog.at_level("WARNING"):
        assert ApiConfig(enabled=True).resolved_token() is None
    assert "empty" in caplog.text
    monkeypatch.setenv(TOKEN_ENV, "y" * 16)
    assert ApiConfig(enabled=True, host="0.0.0.0").resolved_token() == "y" * 16
