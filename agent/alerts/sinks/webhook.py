"""Webhook sink: POST each alert event as JSON, signed with HMAC-SHA256; a 2xx answer is the ack.

Headers: ``X-Watchword-Alert-Id`` (the alert), ``X-Watchword-Event-Id`` (``<alert_id>/<seq>``, what a
receiver drops duplicates by), ``X-Watchword-Timestamp`` (UNIX seconds, an integer, when this
request was signed) and, with a secret, ``X-Watchword-Signature: sha256=<hex>``: the lower-case hex
HMAC-SHA256 under the secret (UTF-8 bytes) of ``<timestamp>.<raw body>``, i.e. the timestamp
header's digits, one ``.`` byte, then the exact body bytes. A receiver recomputes it, compares in
constant time, and refuses a timestamp too far from its clock (a replay); see
:func:`verify_signature`. Retries with backoff are the outbox's job; an HTTP 4xx other than 408 and
429 is a permanent refusal (the event goes to the dead letters after a few tries).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from agent.alerts.sinks.base import Sink, SinkError, encode_payload
from agent.redact import redact_text

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a bodyless GET and call it an ack."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink(Sink):
    """POSTs alert events to ``url``.

    Args:
        name: the sink's outbox name.
        url: http(s) endpoint.
        secret: HMAC key; None sends no signature.
        timeout_s: connect + read timeout of one request, seconds.
        headers: extra request headers (for example an Authorization token).
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
        self.url = url
        self._shown_url = redact_text(url)
        self._secret = secret
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})
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
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise SinkError(f"POST {self._shown_url} failed: {redact_text(str(reason))}") from exc
        if not 200 <= status < 300:
            raise SinkError(f"{self._shown_url} answered HTTP {status}, not a 2xx acknowledgement")
        log.debug("webhook %s: delivered %s", self.name, payload.get("event_id"))
