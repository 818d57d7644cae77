"""Console sessions: sign in with the API token once, then an HttpOnly, SameSite=Strict cookie.

The API accepts the session cookie wherever it accepts the bearer token (one auth dependency), but a
request authenticates by one means only: a request with an ``Authorization`` header by that header
(a wrong one is a 401, whatever cookie comes with it), any other by its cookie. A request that
changes something and carries a live session cookie must also carry the session's CSRF token in the
``X-CSRF-Token`` header, unless it holds the right bearer token; the console's script reads the CSRF
token from a separate, non-HttpOnly cookie (double submit).

Sessions are kept in a small SQLite file in the state folder (``console_sessions.db``), so an agent
restart does not sign the operator out: the browser's cookie is still good when the agent is back.
The file holds a SHA-256 of each session id (never the id itself), its CSRF token, its expiry and a
fingerprint of the API token it was opened with: changing the token ends every session. The file is
derived state: one that cannot be opened is replaced with a warning (everyone signs in again), and
without a state folder sessions live in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from agent.api.guard import bearer_authenticator

SESSION_COOKIE = "watchword_session"
CSRF_COOKIE = "watchword_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SESSIONS = 1000
SESSIONS_FILE = "console_sessions.db"

log = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    token_fp TEXT NOT NULL,
    expires_at REAL NOT NULL
)"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _open_database(path: Path | None) -> sqlite3.Connection:
    """The sessions database at ``path`` (replaced once, with a warning, when it cannot be used), or
    an in-memory one for ``None``."""
    if path is None:
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        memory.execute(_SCHEMA)
        return memory
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_SCHEMA)
            connection.execute("SELECT COUNT(*) FROM console_sessions").fetchone()
            return connection
        except sqlite3.Error as exc:
            if attempt == 2:
                log.warning("console sessions: %s unusable (%s); keeping sessions in memory", path, exc)
                break
            log.warning("console sessions: %s unusable (%s); starting a new one (sign in again)", path, exc)
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    Path(str(path) + suffix).unlink()
    return _open_database(None)


@dataclass
class _Session:
    csrf: str
    expires_at: float


class SessionStore:
    """Open sessions by id, each with its CSRF token and expiry, kept in ``path`` (SQLite).

    Args:
        token: the API token a sign-in must present.
        ttl_s: how long a session lasts without signing in again, seconds.
        path: the sessions file (``<state_dir>/console_sessions.db``); None keeps them in memory
            (a restart signs everyone out).
    """

    def __init__(self, token: str, ttl_s: float = 12 * 3600.0, path: Path | None = None) -> None:
        self._token = token
        self._bearer = bearer_authenticator(token)
        self._token_fp = _digest("watchword-console-session:" + token)
        self.ttl_s = ttl_s
        self.path = path
        self._lock = threading.Lock()
        self._db = _open_database(path)

    def shutdown(self) -> None:
        """Close the sessions file (the sessions in it stay for the next start)."""
        with self._lock:
            self._db.close()

    def count(self) -> int:
        """Live sessions (for tests and health)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM console_sessions WHERE expires_at > ? AND token_fp = ?",
                (time.time(), self._token_fp),
            ).fetchone()
        return int(row[0])

    def token_matches(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.encode(), self._token.encode())

    def open(self, response: Response, secure: bool) -> str:
        """Start a session and set its cookies on ``response``; returns the CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            db = self._db
            db.execute(
                "DELETE FROM console_sessions WHERE expires_at <= ? OR token_fp != ?", (now, self._token_fp)
            )
            (open_now,) = db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()
            if open_now >= MAX_SESSIONS:  # the oldest sign-ins go first
                db.execute(
                    "DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions "
                    "ORDER BY expires_at LIMIT ?)",
                    (open_now - MAX_SESSIONS + 1,),
                )
            db.execute(
                "INSERT INTO console_sessions (id_hash, csrf, token_fp, expires_at) VALUES (?, ?, ?, ?)",
                (_digest(session_id), csrf, self._token_fp, now + self.ttl_s),
            )
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
                self._db.execute("DELETE FROM console_sessions WHERE id_hash = ?", (_digest(session_id),))
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")

    def _session(self, request: Request) -> _Session | None:
        return self._lookup(request.cookies.get(SESSION_COOKIE))

    def _lookup(self, session_id: str | None) -> _Session | None:
        if not session_id or len(session_id) > 256:
            return None
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT csrf, expires_at FROM console_sessions WHERE id_hash = ? AND token_fp = ?",
                    (_digest(session_id), self._token_fp),
                ).fetchone()
            except sqlite3.Error as exc:  # a sessions file gone bad reads as signed out
                log.warning("console sessions: lookup failed: %s", exc)
                return None
        if row is None or float(row[1]) <= time.time():
            return None
        return _Session(str(row[0]), float(row[1]))

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
