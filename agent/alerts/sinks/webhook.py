"""Webhook sink: POST each alert event as JSON, signed with HMAC-SHA256; a 2xx answer is the ack.

Headers: ``X-Watchword-Alert-Id`` (the alert), ``X-Watchword-Event-Id`` (``<alert_id>/<seq>``, what a
receiver drops duplicates by), ``X-Watchword-Timestamp`` (UNIX seconds, an integer, when this
request was signed) and, with a secret, ``X-Watchword-Signature: sha256=<hex>``: the lower-case hex
HMAC-SHA256 under the secret (UTF-8 bytes) of ``<timestamp>.<raw body>``, i.e. the timestamp
header's digits, one ``.`` byte, then the exact body bytes. A receiver recomputes it, compares in
constant time, and refuses a timestamp too far from its clock (a replay); see
:func:`verify_signature`. Retries with backoff are the outbox's job; an HTTP 4xx other than 408 and
429 is a permanent refusal (the event goes to the dead letters after a few tries).

The URL is a secret as a whole (Slack, Teams and Discord webhooks carry their key in the path):
errors, logs and /health show only its scheme, host and port (:func:`agent.redact.shown_endpoint`).
A URL with ``user:password@`` is sent to without them, with HTTP basic authentication instead
(urllib would take the whole ``user:password@host`` for the host name).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from agent.alerts.sinks.base import Sink, SinkError, encode_payload
from agent.redact import REDACTED, redact_text, shown_endpoint

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Watchword-Signature"
ALERT_ID_HEADER = "X-Watchword-Alert-Id"
EVENT_ID_HEADER = "X-Watchword-Event-Id"
TIMESTAMP_HEADER = "X-Watchword-Timestamp"
REPLAY_TOLERANCE_S = 300.0
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
USER_AGENT = "watchword-alerts/1"


def signature(secret: str | bytes, body: bytes, timestamp: int | str) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    signed = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    timestamp: str | None,
    *,
    tolerance_s: float = REPLAY_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether a received request is genuine and fresh.

    ``header`` and ``timestamp`` are the values of ``X-Watchword-Signature`` and
    ``X-Watchword-Timestamp``; a timestamp more than ``tolerance_s`` seconds from ``now`` (UNIX
    seconds, default the clock) is refused as a replay.
    """
    if header is None or timestamp is None or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, body, timestamp), header)


def split_basic_auth(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@``, and the ``Authorization: Basic`` value for them
    (None when the URL has no user info). Percent-escapes in the user and password are decoded."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + ("" if parts.port is None else f":{parts.port}")
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    credentials = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), f"Basic {credentials}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a bodyless GET and call it an ack."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink(Sink):
    """POSTs alert events to ``url``.

    Args:
        name: the sink's outbox name.
        url: http(s) endpoint; ``user:password@`` in it is sent as HTTP basic authentication.
        secret: HMAC key; None sends no signature.
        timeout_s: connect + read timeout of one request, seconds.
        headers: extra request headers (for example an Authorization token).

    Raises:
        ValueError: the URL has ``user:password@`` and ``headers`` an ``Authorization`` too.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name)
        self.url, basic = split_basic_auth(url)
        self._shown_url = shown_endpoint(url)
        parts = urlsplit(self.url)
        # What of the URL an error text may quote (http.client and proxies do), longest first.
        self._hidden = sorted(
            {self.url, url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path} - {"", "/"},
            key=len,
            reverse=True,
        )
        self._secret = secret
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
        if basic is not None:
            if any(key.lower() == "authorization" for key in self.headers):
                raise ValueError("the webhook URL has user:password@ and an Authorization header; keep one")
            self.headers["Authorization"] = basic
        # Proxies from the environment are ignored: a webhook on the site network is addressed directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def send(self, payload: dict[str, Any]) -> None:
        body = encode_payload(payload)
        headers = {
            **self.headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            ALERT_ID_HEADER: str(payload.get("alert_id", "")),
            EVENT_ID_HEADER: str(payload.get("event_id", "")),
        }
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body, timestamp)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            permanent = 400 <= exc.code < 500 and exc.code not in RETRYABLE_CLIENT_ERRORS
            raise SinkError(
                f"{self._shown_url} answered HTTP {exc.code} {exc.reason}", permanent=permanent
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise SinkError(f"POST {self._shown_url} failed: {self._scrub(str(reason))}") from exc
        if not 200 <= status < 300:
            raise SinkError(f"{self._shown_url} answered HTTP {status}, not a 2xx acknowledgement")
        log.debug("webhook %s: delivered %s", self.name, payload.get("event_id"))

    def _scrub(self, text: str) -> str:
        """``text`` without the URL, its path or its query (an error may quote them)."""
        for secret in self._hidden:
            text = text.replace(secret, f"/{REDACTED}" if secret.startswith("/") else self._shown_url)
        return redact_text(text)
