"""Logging configuration: one line per meaningful event, readable as text or shipped as JSON.

Every record carries the coin and the pair it concerns when the code that wrote it runs inside
`log_context(coin=..., pair_id=...)` (the pair lifecycle, an evaluation): the filter below copies
them from context variables, so a line written deep in an adapter still says which pair it was
for. `LOG_FORMAT=json` writes one JSON object a line (python-json-logger) for log shippers, with
`coin` and `pair_id` on every line (null outside a context); `text` (the default) appends
` coin=BTC pair=42` after the logger's name when they are known.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured

_coin: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_coin", default=None)
_pair_id: contextvars.ContextVar[object] = contextvars.ContextVar("log_pair_id", default=None)

FORMATS = ("text", "json")
_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Celery writes a `received` and a `succeeded` line at INFO for every task (two per evaluation, 98 %
# of a demo's log), and beat a `Sending due task` line for each of the several tasks due every
# second. Held at WARNING they still write task failures (ERROR), time limits and beat's errors; at
# LOG_LEVEL=DEBUG they speak again.
QUIET_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


@contextmanager
def log_context(*, coin: str | None = None, pair_id: object = None) -> Iterator[None]:
    """Tag every record written inside the block with the coin and the pair (those given)."""
    tokens = []
    if coin is not None:
        tokens.append((_coin, _coin.set(coin)))
    if pair_id is not None:
        tokens.append((_pair_id, _pair_id.set(pair_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """A handler filter: puts the current `coin` and `pair_id` on the record (None outside a context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.coin = _coin.get()
        record.pair_id = _pair_id.get()
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with ` coin=… pair=…` after the logger's name when a context set them."""

    def format(self, record: logging.LogRecord) -> str:
        tags = []
        if getattr(record, "coin", None) is not None:
            tags.append(f"coin={record.coin}")
        if getattr(record, "pair_id", None) is not None:
            tags.append(f"pair={record.pair_id}")
        record.context = f" {' '.join(tags)}" if tags else ""
        return super().format(record)


def logging_config(level: str = "INFO", fmt: str = "text") -> dict:
    """The LOGGING dict for settings: one console handler, secrets masked, context on every record."""
    if fmt not in FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}.")
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ImproperlyConfigured(f"LOG_LEVEL={level!r} is not a logging level (DEBUG, INFO, WARNING, ERROR).")
    quiet = logging.getLevelName(level.upper()) > logging.DEBUG
    formatters = {
        "text": {"()": TextFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"},
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": _FIELDS,
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {fmt: formatters[fmt]},
        # Secrets (signed queries, Authorization, JWTs, API keys) are masked on every handler.
        "filters": {
            "redact": {"()": "trading.exchanges.redact.RedactSecrets"},
            "context": {"()": ContextFilter},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["redact", "context"]},
        },
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            "django": {"level": "WARNING"},
            **({name: {"level": "WARNING"} for name in QUIET_LOGGERS} if quiet else {}),
        },
    }
