"""Security headers on every answer of the API and the console, the guard's refusals included.

The console is plain HTML, CSS and JavaScript from ``/console/`` (no inline script or style, nothing
from another origin), so its policy allows this origin only: scripts, styles, ``fetch`` and the
event stream from ``'self'``, images from ``'self'`` and ``data:`` (the camera test's snapshot),
video from ``'self'`` (the alert clips).
No page may frame it (clickjacking: ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` for
older browsers), no response is sniffed into another type, and no URL leaks in a ``Referer``.
"""

from __future__ import annotations

from agent.api.guard import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("latin-1")),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_NAMES = {name for name, _ in SECURITY_HEADERS}


class SecurityHeaders:
    """ASGI middleware, outermost: adds :data:`SECURITY_HEADERS` to every HTTP response (replacing
    any a route set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": kept + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)
