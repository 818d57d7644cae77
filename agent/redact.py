"""Credentials out of everything a person or another program reads: logs, /health, errors, evidence.

A URI's password (``rtsp://admin:hunter2@cam/...``) becomes ``***``, wherever in a text it appears
(GStreamer error messages quote the whole URL), and so does the value of a query parameter whose
name says it is a secret (``?user=admin&password=hunter2``, ``&pwd=``, ``&token=``, ``&auth=``...:
IP cameras often take their credentials there). User names stay, as in ``user:***@``.
:class:`RedactingFilter` applies this to every log record, so a module that logs a URI cannot leak
it by mistake.

A webhook URL is a credential as a whole (Slack, Teams and Discord put the key in the path); it is
shown only as :func:`shown_endpoint` (scheme, host and port).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

# scheme://user:password@  (the user part may be empty; the password runs to the last '@' of the authority)
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@?#]*):(?P<password>[^\s/?#]*)@"
)
# ?password=...  &pwd=...  ;token=...: a query parameter whose name holds one of these words (any
# case, any affixes: ``api_key``, ``AuthToken``, ``passwd``); its value runs to the next separator.
_SECRET_PARAMETER = re.compile(
    r"(?P<key>(?<=[?&;])[\w.\-]*(?:pass|pwd|psw|secret|token|auth|key|sig|cred|session)[\w.\-]*=)"
    r"(?P<value>[^&;#\s'\"<>]+)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` and the value of every
    secret-looking query parameter (``?password=``, ``&pwd=``, ``&token=``...) replaced by ``***``."""
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    if "=" in text:
        text = _SECRET_PARAMETER.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
    return text


def has_credentials(uri: str) -> bool:
    """Whether ``uri`` carries a password, in its user info or in a secret-looking query parameter."""
    return redact_text(uri) != uri


def shown_endpoint(url: str) -> str:
    """``url`` as logs, errors and /health may show it: scheme, host and port only, with ``/***``
    for a path or query (``https://hooks.slack.com/***``). For webhooks, whose URL is the key."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return f"{url.split(':', 1)[0]}://{REDACTED}"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        shown += f"/{REDACTED}"
    return shown


def redact_value(value: Any) -> Any:
    """:func:`redact_text` applied to every string inside ``value`` (dicts, lists, tuples)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item) for item in value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message without URI passwords (install on the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error reporting
            return True
        cleaned = redact_text(message)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default)."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
