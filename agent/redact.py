"""Credentials out of everything a person or another program reads: logs, /health, errors, evidence.

A URI's password (``rtsp://admin:hunter2@cam/...``) becomes ``***``, wherever in a text it appears
(GStreamer error messages quote the whole URL). :class:`RedactingFilter` applies this to every log
record, so a module that logs a URI cannot leak it by mistake.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://user:password@  (the user part may be empty; the password runs to the last '@' of the authority)
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@?#]*):(?P<password>[^\s/?#]*)@"
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)


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
