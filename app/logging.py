"""Logging configured once: JSON lines in production, readable text in a terminal.

Job context (certification id, attempt, target id, task id) and the request id are bound in
contextvars and added to every line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import IO, Any

from app.config import Settings
from app.redaction import RedactingFilter

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def bind_job(**values: Any) -> None:
    """Bind (or with no arguments, clear) the context added to every log line."""
    _context.set({k: v for k, v in values.items() if v is not None} if values else {})


def bind(**values: Any) -> None:
    _context.set({**(_context.get() or {}), **{k: v for k, v in values.items() if v is not None}})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    return {**(_context.get() or {}), **extra}


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback: as RedactingFilter left it in exc_text, else formatted."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if exception := _exception(self, record):
            payload["exception"] = exception
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
            f"{record.levelname:<7} {record.name}: {record.getMessage()} {fields}".rstrip()
        )
        if exception := _exception(self, record):
            line += "\n" + exception
        return line


def log_handler(fmt: str, stream: IO[str]) -> logging.Handler:
    """The handler every line goes through: its format, and the secrets this process
    handled redacted (app.redaction.remember)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = log_handler(fmt, sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "asyncio", "kombu", "amqp", "tornado.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
