"""Console sessions and the console's response headers on a real server (uvicorn on 127.0.0.1), over
real sockets: a request authenticates by one means only (a bearer header, or else the cookie), the
cookie always needs the CSRF token to change something, the page forbids framing, sniffing and
foreign scripts, and the cookies are ``Secure`` behind a TLS proxy listed in ``api.trusted_proxies``
(and only then)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.config import ApiConfig
from agent.api.server import ApiServer
from agent.console.services import ConsoleServices
from agent.console.session import SessionStore
from agent.queries import QueryRegistry

TOKEN = "session-test-token-0123456789"
PROXY_ADDRESS = "127.0.0.2"  # a proxy on another address than the agent's (Linux routes 127.0.0.0/8)


@contextmanager
def console_server(
    root: Path,
    trusted_proxies: Sequence[str] = (),
    sessions_path: Path | None = None,
    token: str = TOKEN,
    ttl_s: float = 3600.0,
) -> Iterator[ApiServer]:
    registry = QueryRegistry(root / "state.db")
    sessions = SessionStore(token, ttl_s=ttl_s, path=sessions_path)
    console = ConsoleServices(sessions=sessions, pages=True)
    context = ApiContext(registry=registry, token=token, health=dict, metrics=str, console=console)
    settings = ApiConfig.model_validate({"trusted_proxies": list(trusted_proxies)})
    server = ApiServer(create_app(context), "127.0.0.1", 0, settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        sessions.shutdown()
        registry.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with console_server(tmp_path_factory.mktemp("console-session")) as running:
        yield running


def call(
    server: ApiServer,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, Any, list[tuple[str, str]]]:
    """(status, parsed JSON or bytes, header list) of one request, from ``source`` if given."""
    connection = http.client.HTTPConnection(
        server.host, server.port, timeout=10, source_address=None if source is None else (source, 0)
    )
    try:
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        connection.request(method, path, None if body is None else json.dumps(body), sent)
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(raw) if "json" in kind and raw else raw, response.getheaders()
    finally:
        connection.close()


def sign_in(server: ApiServer, **kwargs: Any) -> tuple[dict[str, str], list[str]]:
    """The session's cookies ({name: value}) and the raw ``Set-Cookie`` lines."""
    status, _, headers = call(server, "POST", "/session", {"token": TOKEN}, **kwargs)
    assert status == 200
    raw = [value for name, value in headers if name.lower() == "set-cookie"]
    jar: SimpleCookie = SimpleCookie()
    for value in raw:
        jar.load(value)
    return {name: morsel.value for name, morsel in jar.items()}, raw


def test_a_wrong_bearer_header_beside_the_cookie_neither_skips_csrf_nor_authenticates(
    server: ApiServer,
) -> None:
    cookies, _ = sign_in(server)
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    csrf = {"X-CSRF-Token": cookies["watchword_csrf"]}
    for wrong in ("Bearer wrong", "Basic d3Jvbmc6d3Jvbmc=", "Bearer", ""):
        both = {**cookie, "Authorization": wrong}
        # cookie and a wrong header, no CSRF token: the cookie still needs it
        assert call(server, "POST", "/queries", {"text": "forged"}, both)[0] == 403, wrong
        # with the CSRF token: the header is this request's one means, and it is wrong
        assert call(server, "POST", "/queries", {"text": "forged"}, {**both, **csrf})[0] == 401, wrong
        assert call(server, "GET", "/queries", headers=both)[0] == 401, wrong
    assert call(server, "GET", "/queries", headers=cookie)[1] == []  # nothing was added
    # each means alone still works: the cookie with its CSRF token, the right bearer token alone
    assert call(server, "POST", "/queries", {"text": "by cookie"}, {**cookie, **csrf})[0] == 201
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert call(server, "POST", "/queries", {"text": "by token"}, bearer)[0] == 201
    assert call(server, "POST", "/queries", {"text": "by token, cookie too"}, {**bearer, **cookie})[0] == 201


CSP_WANTED = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "media-src": "'self'",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
}


@pytest.mark.parametrize("path", ["/", "/console/console.js", "/session", "/queries", "/nope", "/livez"])
def test_every_response_forbids_framing_sniffing_and_foreign_scripts(server: ApiServer, path: str) -> None:
    status, _, headers = call(server, "GET", path)
    assert status in (200, 401, 404)
    got = {name.lower(): value for name, value in headers}
    assert got["x-content-type-options"] == "nosniff"
    assert got["x-frame-options"] == "DENY"
    assert got["referrer-policy"] == "no-referrer"
    policy = dict([*part.strip().split(" ", 1), ""][:2] for part in got["content-security-policy"].split(";"))
    assert {key: policy.get(key) for key in CSP_WANTED} == CSP_WANTED


def _secure(raw: list[str]) -> list[bool]:
    return ["secure" in [part.strip().lower() for part in line.split(";")] for line in raw]


def test_cookies_are_secure_behind_a_trusted_tls_proxy_only(tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with console_server(tmp_path, trusted_proxies=[PROXY_ADDRESS]) as server:
        _, raw = sign_in(server, headers=https, source=PROXY_ADDRESS)
        assert _secure(raw) == [True, True]
        _, raw = sign_in(server, source=PROXY_ADDRESS)  # plain HTTP through the proxy
        assert _secure(raw) == [False, False]
        # any other client cannot claim HTTPS (not even one on this machine)
        _, raw = sign_in(server, headers=https)
        assert _secure(raw) == [False, False]
    with console_server(tmp_path) as server:  # no trusted proxy (the default): no forwarded header counts
        for source in (None, PROXY_ADDRESS):
            _, raw = sign_in(server, headers=https, source=source)
            assert _secure(raw) == [False, False]


def test_trusted_proxies_are_addresses_or_networks() -> None:
    from pydantic import ValidationError

    assert ApiConfig(trusted_proxies=["10.0.0.5", "fd00::/8", "172.16.0.0/12"]).trusted_proxies
    for bad in (["*"], ["proxy.example"], ["10.0.0.300"]):
        with pytest.raises(ValidationError, match="trusted_proxies"):
            ApiConfig(trusted_proxies=bad)


def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        "X-CSRF-Token": cookies["watchword_csrf"],
    }


def test_a_session_survives_a_restart_of_the_agent(tmp_path: Path) -> None:
    """Sessions are kept in the state folder: the browser's cookie works on the restarted agent, for
    reads and (with its CSRF token) for changes; the file holds no session id in clear."""
    path = tmp_path / "console_sessions.db"
    with console_server(tmp_path, sessions_path=path) as server:
        cookies, _ = sign_in(server)
    assert cookies["watchword_session"].encode() not in path.read_bytes()
    with console_server(tmp_path, sessions_path=path) as server:
        headers = _cookie_header(cookies)
        assert call(server, "GET", "/session", headers=headers)[1]["signed_in"] is True
        assert call(server, "GET", "/queries", headers=headers)[0] == 200
        assert call(server, "POST", "/queries", {"text": "after the restart"}, headers)[0] == 201
        # signing out ends it for good
        assert call(server, "DELETE", "/session", headers=headers)[0] == 200
    with console_server(tmp_path, sessions_path=path) as server:
        assert call(server, "GET", "/queries", headers=_cookie_header(cookies))[0] == 401


def test_a_new_token_or_the_expiry_ends_stored_sessions(tmp_path: Path) -> None:
    path = tmp_path / "console_sessions.db"
    with console_server(tmp_path, sessions_path=path) as server:
        cookies, _ = sign_in(server)
    with console_server(tmp_path, sessions_path=path, token="another-token-0123456789") as server:
        assert call(server, "GET", "/queries", headers=_cookie_header(cookies))[0] == 401
        assert call(server, "GET", "/session", headers=_cookie_header(cookies))[1]["signed_in"] is False
    with console_server(tmp_path, sessions_path=tmp_path / "expiring.db", ttl_s=0.0) as server:
        cookies, _ = sign_in(server)
        assert call(server, "GET", "/queries", headers=_cookie_header(cookies))[0] == 401


def test_a_sessions_file_that_is_not_a_database_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Derived state: a damaged sessions file costs a sign-in (and a warning), never the start."""
    path = tmp_path / "console_sessions.db"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING"), console_server(tmp_path, sessions_path=path) as server:
        cookies, _ = sign_in(server)
        assert call(server, "GET", "/queries", headers=_cookie_header(cookies))[0] == 200
    assert any("console_sessions.db unusable" in r.getMessage() for r in caplog.records)
    store = SessionStore(TOKEN, path=path)
    assert store.count() == 1
    store.shutdown()
