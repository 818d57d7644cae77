"""Webhook sink: POST each alert event as JSON, signed with HMAC-SHA256; a 2xx answer is the ack.

Headers: ``X-Watchword-Alert-Id`` (the alert), ``X-Watchword-Event-Id`` (``<alert_id>/<seq>``, what a
receiver drops duplicates by) and, with a secret, ``X-Watchword-Signature: sha256=<hex>``: the
HMAC-SHA256 of the exact body bytes under the secret. Retries with backoff are the outbox's job.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from agent.alerts.sinks.base import Sink, SinkError, encode_payload

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Watchword-Signature"
ALERT_ID_HEADER = "X-Watchword-Alert-Id"
EVENT_ID_HEADER = "X-Watchword-Event-Id"
USER_AGENT = "watchword-alerts/1"


def signature(secret: str | bytes, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether a received signature header matches ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


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
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                status = response.status
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise SinkError(f"{self.url} answered HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise SinkError(f"POST {self.url} failed: {reason}") from exc
        if not 200 <= status < 300:
            raise SinkError(f"{self.url} answered HTTP {status}, not a 2xx acknowledgement")
        log.debug("webhook %s: delivered %s", self.name, payload.get("event_id"))
