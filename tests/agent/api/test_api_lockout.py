"""Guessing the token is slowed per client: wrong bearer tokens and sign-ins lock that client out
(429, the token unread), counted in /metrics, while a right token from another address still works.

A real uvicorn server on 127.0.0.1; "another client" is a socket bound to 127.0.0.2 (all of 127/8
is loopback on Linux), or, behind a trusted proxy, another X-Forwarded-For address.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.config import ApiConfig
from agent.api.lockout import AuthLockout, AuthLockoutConfig, client_key
from agent.api.metrics import render
from agent.api.server import ApiServer
from agent.console.services import ConsoleServices
from agent.console.session import SESSION_COOKIE, SessionStore
from agent.queries import QueryRegistry

TOKEN = "lockout-token-0123456789abcdef"
FAILURES = 5
LOCKOUT = AuthLockoutConfig(max_failures=FAILURES, window_s=60, lockout_s=30, max_lockout_s=120)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class SourceConnection(http.client.HTTPConnection):
    """An HTTP connection from a chosen loopback source address (another client, to the server)."""

    def __init__(self, port: int, source: str) -> None:
        super().__init__("127.0.0.1", port, timeout=10, source_address=(source, 0))


def _serve(tmp_path: Path, lockout: AuthLockout, settings: ApiConfig | None = None) -> ApiServer:
    context = ApiContext(
        registry=QueryRegistry(tmp_path / "w.db"),
        token=TOKEN,
        health=lambda: {"status": "ok"},
        metrics=lambda: render(lockout.metrics()),
        console=ConsoleServices(sessions=SessionStore(TOKEN), pages=False),
        auth_lockout=lockout,
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0, settings)
    server.start()
    return server


@pytest.fixture
def lockout() -> AuthLockout:
    return AuthLockout(LOCKOUT)


@pytest.fixture
def server(tmp_path: Path, lockout: AuthLockout) -> Iterator[ApiServer]:
    api = _serve(tmp_path, lockout)
    yield api
    api.stop()


def _get(
    server: ApiServer, token: str | None, source: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    connection = SourceConnection(server.port, source)
    try:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        connection.request("GET", "/queries", headers=sent)
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def _sign_in(server: ApiServer, token: str, source: str = "127.0.0.1") -> tuple[int, dict[str, str]]:
    """The status and headers of a sign-in; ``cookie`` holds the cookies it set, as a Cookie header."""
    connection = SourceConnection(server.port, source)
    try:
        body = json.dumps({"token": token})
        connection.request("POST", "/session", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        cookies = [v.split(";", 1)[0] for k, v in response.getheaders() if k.lower() == "set-cookie"]
        headers["cookie"] = "; ".join(cookies)
        return response.status, headers
    finally:
        connection.close()


def _metrics(server: ApiServer, source: str) -> dict[str, float]:
    connection = SourceConnection(server.port, source)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
    finally:
        connection.close()
    samples = {}
    for line in text.splitlines():
        if line.startswith("watchword_api_auth"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _other_loopback_address_works() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 9), timeout=0.2, source_address=("127.0.0.2", 0)):
            pass
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return True


needs_127_0_0_2 = pytest.mark.skipif(
    not _other_loopback_address_works(), reason="this machine cannot use 127.0.0.2 as a source address"
)


@needs_127_0_0_2
def test_wrong_tokens_lock_out_their_client_but_not_a_right_token_from_another(server: ApiServer) -> None:
    for _ in range(FAILURES):
        assert _get(server, "wrong-token-0123456789")[0] == 401
    status, headers = _get(server, "wrong-token-0123456789")
    assert status == 429 and 25 <= int(headers["retry-after"]) <= 30
    # Locked out, the right token from the same client is refused unread: a right guess looks wrong.
    assert _get(server, TOKEN)[0] == 429
    # Without a token the client learns nothing new, and is told to authenticate.
    assert _get(server, None)[0] == 401
    # Another client with the right token is not affected, and can read the numbers.
    assert _get(server, TOKEN, source="127.0.0.2")[0] == 200
    numbers = _metrics(server, "127.0.0.2")
    assert numbers['watchword_api_auth_failures_total{method="bearer"}'] == FAILURES
    assert numbers["watchword_api_auth_lockouts_total"] == 1
    assert numbers["watchword_api_auth_refused_total"] == 2
    assert numbers["watchword_api_auth_clients_locked_out"] == 1


@needs_127_0_0_2
def test_wrong_sign_ins_count_with_wrong_tokens_and_lock_the_client_out(server: ApiServer) -> None:
    for attempt in range(FAILURES):
        if attempt % 2:
            assert _get(server, "wrong-token-0123456789")[0] == 401
        else:
            assert _sign_in(server, "wrong-token-0123456789")[0] == 401
    status, headers = _sign_in(server, TOKEN)
    assert status == 429 and int(headers["retry-after"]) > 0
    status, headers = _sign_in(server, TOKEN, source="127.0.0.2")
    assert status == 200 and SESSION_COOKIE in headers["cookie"]
    numbers = _metrics(server, "127.0.0.2")
    assert numbers['watchword_api_auth_failures_total{method="sign_in"}'] == 3
    assert numbers['watchword_api_auth_failures_total{method="bearer"}'] == 2


def test_a_console_session_keeps_working_while_its_address_is_locked_out(server: ApiServer) -> None:
    status, headers = _sign_in(server, TOKEN)
    assert status == 200
    cookie = headers["cookie"]
    for _ in range(FAILURES):
        _get(server, "wrong-token-0123456789")
    assert _get(server, TOKEN)[0] == 429
    assert _get(server, None, headers={"Cookie": cookie})[0] == 200


def test_a_right_token_forgets_the_clients_failures(server: ApiServer) -> None:
    for _ in range(3):
        for _ in range(FAILURES - 1):
            assert _get(server, "wrong-token-0123456789")[0] == 401
        assert _get(server, TOKEN)[0] == 200  # an operator's typo, then the right token


def test_x_forwarded_for_names_the_client_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    # Not trusted (the default): a client cannot dodge its lockout by making up addresses.
    lockout = AuthLockout(LOCKOUT)
    api = _serve(tmp_path / "direct", lockout)
    try:
        for n in range(FAILURES):
            _get(api, "wrong-token-0123456789", headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert _get(api, TOKEN, headers={"X-Forwarded-For": "198.51.100.7"})[0] == 429
    finally:
        api.stop()
    # Behind a trusted proxy, each forwarded client has its own count.
    lockout = AuthLockout(LOCKOUT)
    api = _serve(tmp_path / "proxied", lockout, ApiConfig(trusted_proxies=["127.0.0.1"]))
    try:
        for _ in range(FAILURES):
            _get(api, "wrong-token-0123456789", headers={"X-Forwarded-For": "203.0.113.9, 192.0.2.1"})
        assert _get(api, TOKEN, headers={"X-Forwarded-For": "192.0.2.1"})[0] == 429
        assert _get(api, TOKEN, headers={"X-Forwarded-For": "192.0.2.2"})[0] == 200
    finally:
        api.stop()


def test_lockouts_double_up_to_the_longest_and_end() -> None:
    clock = Clock()
    lockout = AuthLockout(LOCKOUT, clock=clock)
    seen = []
    for _ in range(4):
        started = [lockout.failed("198.51.100.7", "bearer") for _ in range(FAILURES)]
        assert started[:-1] == [0.0] * (FAILURES - 1)
        seen.append(started[-1])
        assert lockout.locked_for("198.51.100.7") == pytest.approx(started[-1])
        assert lockout.locked_for("198.51.100.8") == 0
        clock.now += started[-1]
        assert lockout.locked_for("198.51.100.7") == 0
    assert seen == [30, 60, 120, 120]
    # Quiet for longer than the longest lockout: the next one is the short one again.
    clock.now += 121
    assert [lockout.failed("198.51.100.7", "bearer") for _ in range(FAILURES)][-1] == 30


def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    lockout = AuthLockout(LOCKOUT, clock=clock)
    for _ in range(3 * FAILURES):
        assert lockout.failed("198.51.100.7", "sign_in") == 0
        clock.now += LOCKOUT.window_s / (FAILURES - 1) + 0.1


def test_clients_are_addresses_and_ipv6_hosts_their_64() -> None:
    assert client_key({"client": ("192.0.2.1", 5000)}) == "192.0.2.1"
    assert client_key({"client": ("2001:db8:1:2:aaaa::1", 5000)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("2001:db8:1:2:bbbb::9", 5000)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("::ffff:192.0.2.1", 5000)}) == "192.0.2.1"
    assert client_key({"client": None}) == "unknown"


def test_remembered_clients_are_bounded() -> None:
    lockout = AuthLockout(AuthLockoutConfig(max_failures=2, max_clients=16))
    for n in range(1000):
        lockout.failed(f"198.51.{n // 256}.{n % 256}", "bearer")
    assert len(lockout._clients) == 16


def test_guessing_rate_is_bounded(server: ApiServer, lockout: AuthLockout) -> None:
    """As many wrong tokens as one client can send in a second: only ``max_failures`` are checked."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + 1.0
    sent = 0
    try:
        while time.monotonic() < deadline:
            connection.request("GET", "/queries", headers={"Authorization": f"Bearer guess-{sent:020d}"})
            response = connection.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            sent += 1
    finally:
        connection.close()
    assert statuses.get(401) == FAILURES and statuses.get(429, 0) == sent - FAILURES, statuses
    assert lockout.failures["bearer"] == FAILURES
