"""Console sessions: sign in with the API token once, then an HttpOnly, SameSite=Strict cookie.

The API accepts the session cookie wherever it accepts the bearer token (one auth dependency), but a
request authenticates by one means only: a request with an ``Authorization`` header by that header
(a wrong one is a 401, whatever cookie comes with it), any other by its cookie. A request that
changes something and carries a live session cookie must also carry the session's CSRF token in the
``X-CSRF-Token`` header, unless it holds the right bearer token; the console's script reads the CSRF
token from a separate, non-HttpOnly cookie (double submit). Sessions live in memory: a restart signs
everyone out.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.api.guard import bearer_authenticator

SESSION_COOKIE = "watchword_session"
CSRF_COOKIE = "watchword_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 1000


@dataclass
class _Session:
    csrf: str
    expires_at: float


class SessionStore:
    """Open sessions by id, each with its CSRF token and expiry.

    Args:
        token: the API token a sign-in must present.
        ttl_s: how long a session lasts without signing in again, seconds.
    """

    def __init__(self, token: str, ttl_s: float = 12 * 3600.0) -> None:
        self._token = token
        self._bearer = bearer_authenticator(token)
        self.ttl_s = ttl_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def token_matches(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode(), self._token.encode())

    def open(self, response: Response, secure: bool) -> str:
        """Start a session and set its cookies on ``response``; returns the CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
            if len(self._sessions) >= MAX_SESSIONS:  # the oldest sign-in goes first
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires_at)
                del self._sessions[oldest]
            self._sessions[session_id] = _Session(csrf, now + self.ttl_s)
        max_age = int(self.ttl_s)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/",
        )
        response.set_cookie(
            CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/"
        )
        return csrf

    def close(self, request: Request, response: Response) -> None:
        """End the request's session and clear both cookies."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")

    def _session(self, request: Request) -> _Session | None:
        return self._lookup(request.cookies.get(SESSION_COOKIE))

    def _lookup(self, session_id: str | None) -> _Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= time.time():
                del self._sessions[session_id]
                return None
        return session

    def signed_in(self, request: Request) -> bool:
        """A live session cookie (no CSRF check: for reads and for the sign-in state)."""
        return self._session(request) is not None

    # --- for the API guard and the CSRF middleware, which see only headers ---------------------

    def _from_headers(self, headers: Mapping[str, str]) -> _Session | None:
        raw = headers.get("cookie")
        if not raw:
            return None
        try:
            jar: SimpleCookie = SimpleCookie(raw)
        except CookieError:
            return None
        morsel = jar.get(SESSION_COOKIE)
        return self._lookup(morsel.value if morsel is not None else None)

    def authenticator(self, headers: Mapping[str, str]) -> str | None:
        """The API guard's authenticator: "session" for a live session cookie on a request without an
        ``Authorization`` header (such a request authenticates by its header alone). The CSRF token
        is checked by :class:`CsrfGuard`, before the guard runs."""
        if "authorization" in headers:
            return None
        return "session" if self._from_headers(headers) is not None else None

    def csrf_refused(self, method: str, headers: Mapping[str, str]) -> bool:
        """A state-changing request with a live session cookie and without its CSRF token (a request
        that holds the right bearer token needs none: a browser never adds that header by itself)."""
        if method in SAFE_METHODS or self._bearer(headers) is not None:
            return False
        session = self._from_headers(headers)
        if session is None:
            return False  # no session: the guard answers 401 (or the route needs none)
        supplied = headers.get(CSRF_HEADER, "")
        return not hmac.compare_digest(supplied.encode(), session.csrf.encode())


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class CsrfGuard:
    """ASGI middleware in front of the API guard: refuses (403) a cookie-authenticated request that
    changes something without the session's ``X-CSRF-Token``; signing in (POST /session) is exempt."""

    def __init__(self, app: ASGIApp, *, sessions: SessionStore) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not (
            scope.get("path") == "/session" and scope.get("method") == "POST"
        ):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if self.sessions.csrf_refused(str(scope.get("method", "GET")), headers):
                body = json.dumps({"detail": "missing or wrong CSRF token"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
