"""Secrets never reach a log line or an exception's text.

The adapters already keep signed URLs out of their own messages (`base._path`); this is the net
under that: whatever text a library, a traceback or a future message carries, a Binance
`signature=` / `timestamp=` query, an `Authorization` header's credentials, a JWT (Upbit's tokens)
an `X-MBX-APIKEY` value or a Telegram bot token is masked before it is written. The filter sits on the logging handlers
(settings.LOGGING), so it also covers Celery's and Django's own records.
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"
_PATTERNS = [
    # a signed query, whole: everything after '?' that carries a signature or a timestamp
    (re.compile(r"\?[^\s'\"]*(?:signature|timestamp|recvWindow)=[^\s'\"]*", re.I), "?" + MASK),
    (re.compile(r"(signature=)[0-9A-Za-z%+/=_-]+", re.I), r"\1" + MASK),
    (re.compile(r"((?:authorization|x-mbx-apikey|api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|token)"
                r"[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|token\s+)?[^\s,'\"}]+", re.I), r"\1" + MASK),
    (re.compile(r"\beyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]*\.?[0-9A-Za-z_-]*"), MASK),  # a JWT
    (re.compile(r"(Bearer\s+)[0-9A-Za-z._~+/=-]+", re.I), r"\1" + MASK),
    (re.compile(r"\d{6,}:[0-9A-Za-z_-]{30,}"), MASK),  # a Telegram bot token (its API URLs carry it)
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message (arguments merged) and its traceback, masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 — a broken format string is logged as it is, masked
            message = str(record.msg)
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
