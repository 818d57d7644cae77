"""The API's front door, as ASGI middleware: host check, authentication and a body limit, all
decided from the request line and headers, before any route reads (or parses) a byte of the body.

- **Host check**: a tokenless API (loopback only) answers only requests whose ``Host`` is a
  loopback name, so a web page that rebinds its DNS name to 127.0.0.1 cannot drive it (400).
- **Authentication**: every path but the public ones (``/health``, ``/livez``) needs one of the
  :data:`Authenticator` callables to accept the request (401 otherwise, with ``WWW-Authenticate``).
  The bearer token is one; others (a console session cookie) join through ``authenticators``.
  The accepted method is put in ``scope["state"]["auth"]`` for the routes' :func:`require_auth`.
  A wrong ``Authorization`` header counts against the client in :class:`AuthLockout`; a locked-out
  client's requests that carry one are answered 429 with ``Retry-After``, the header unread.
- **Body limit**: a declared ``Content-Length`` over ``max_body_bytes`` is refused with 413 before
  reading; a chunked body is counted as it streams and cut off with 413 at the limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping, Sequence
from typing import Any

from fastapi import HTTPException, Request, status

from agent.api.lockout import AuthLockout, client_key, retry_after

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Looks at the request headers (lower-case names); returns the name of the method that accepted it.
Authenticator = Callable[[Mapping[str, str]], "str | None"]

PUBLIC_PATHS = frozenset({"/health", "/livez"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
AUTH_STATE_KEY = "auth"
DEFAULT_MAX_BODY_BYTES = 256 * 1024


def bearer_authenticator(token: str) -> Authenticator:
    """Accepts ``Authorization: Bearer <token>`` (constant-time comparison)."""
    expected = token.encode("utf-8")

    def check(headers: Mapping[str, str]) -> str | None:
        scheme, _, supplied = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return "bearer" if hmac.compare_digest(supplied.strip().encode("utf-8"), expected) else None

    return check


# RFC 9110 Host: a name, an IPv4 address or a bracketed IPv6 address, then at most ":" and a port.
_HOST = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::[0-9]{1,5})?", re.ASCII)


def host_name(host_header: str) -> str | None:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``[::1]``, ``a:80`` -> ``a``); None for
    anything else (``localhost:1@evil``), so that no other parser can read another host in it."""
    match = _HOST.fullmatch(host_header.strip().lower())
    return match.group("host") if match else None


class ApiGuard:
    """ASGI middleware in front of the app (see the module docstring).

    Args:
        app: the application.
        authenticators: ways a request may authenticate; empty means no authentication at all.
        allowed_hosts: host names accepted in ``Host``; None accepts any.
        max_body_bytes: the largest request body read.
        public_paths: paths that need no authentication.
        lockout: failed authentications per client; None counts nothing and locks no one out.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticators: Sequence[Authenticator],
        allowed_hosts: Collection[str] | None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        public_paths: Collection[str] = PUBLIC_PATHS,
        lockout: AuthLockout | None = None,
    ) -> None:
        self.app = app
        self.lockout = lockout
        self.authenticators = authenticators
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.max_body_bytes = max_body_bytes
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            await _answer(send, 400, "this API answers only loopback host names (no token is set)")
            return
        if scope.get("path") not in self.public_paths and self.authenticators:
            client = client_key(scope)
            token_sent = "authorization" in headers
            locked_s = self.lockout.locked_for(client) if token_sent and self.lockout is not None else 0.0
            if locked_s > 0:
                wait = retry_after(locked_s)
                detail = f"too many failed authentications from this address; try again in {wait} s"
                await _answer(send, 429, detail, {"retry-after": wait})
                return
            method = next((m for m in (a(headers) for a in self.authenticators) if m), None)
            if method is None:
                if token_sent and self.lockout is not None:
                    self.lockout.failed(client, "bearer")
                await _answer(send, 401, "missing or wrong bearer token", {"www-authenticate": "Bearer"})
                return
            if method == "bearer" and self.lockout is not None:
                self.lockout.succeeded(client)
            scope.setdefault("state", {})[AUTH_STATE_KEY] = method
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_body_bytes:
                await _answer(send, 413, f"request body over {self.max_body_bytes} bytes")
                return
        await self._call_counting(scope, receive, send)

    async def _call_counting(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the (authenticated) body up to the limit, then hand it to the app in one piece.

        Bodies are small by design (the limit is a few hundred KB), so buffering costs little and
        a chunked body over the limit is refused before the app sees any of it.
        """
        if scope.get("method") in {"GET", "HEAD", "DELETE", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message.get("type") != "http.request":
                await self.app(scope, _replay([], message, receive), send)  # the client left
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await _answer(send, 413, f"request body over {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)


def _replay(chunks: list[bytes], final: Message | None, receive_more: Receive) -> Receive:
    """A ``receive`` that returns the buffered body once (or ``final``), then the server's messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await receive_more()
        sent = True
        if final is not None:
            return final
        return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    return receive


async def _answer(send: Send, code: int, detail: str, extra: Mapping[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def require_auth(request: Request) -> None:
    """Route dependency: the guard authenticated this request (defence in depth behind the guard)."""
    if not getattr(request.app.state, "auth_required", False):
        return
    if request.scope.get("state", {}).get(AUTH_STATE_KEY) is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
