"""One log format for the whole process: structlog and standard-library loggers alike.

structlog events and stdlib records (uvicorn, SQLAlchemy, httpx, asyncio, ...)
meet in one handler on the root logger whose `ProcessorFormatter` runs the same
processors on both, so a line from uvicorn looks like a line from the app: JSON
in production, coloured key-values in a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from mainspring.observability.access import (
    JsonLinesAccessLog,
    JsonLinesFileAccessLog,
    StructlogAccessLog,
    set_access_log,
)
from mainspring.observability.redaction import redact_event

HANDLER_NAME = "mainspring"
ADOPTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.asgi",
    "gunicorn",
    "gunicorn.error",
    "sqlalchemy",
    "httpx",
    "httpcore",
    "asyncio",
)
"""Libraries that may have installed handlers of their own; theirs are removed and
their records go up to the root handler."""
REPLACED_LOGGERS = ("uvicorn.access", "gunicorn.access")
"""Access logs that `RequestContextMiddleware` replaces; silenced so lines are not doubled."""
CHATTY_LOGGERS = ("httpx",)
"""Libraries that log routine work at INFO (httpx: a line per request, so one per poll):
those records are written at DEBUG, like httpcore's, and so hidden at the default level."""


class InfoAsDebug(logging.Filter):
    """Turns a logger's INFO records into DEBUG ones (warnings and errors stay as they are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_info_as_debug = InfoAsDebug()

_FIRST_KEYS = ("timestamp", "level", "logger", "event")

add_timestamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


def order_keys(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put timestamp, level, logger and event first, so a JSON line reads left to right."""
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def shared_processors() -> list[Processor]:
    """What every event gets, whether it came from structlog or from a stdlib logger."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        add_timestamp,
    ]


def renderer_processors(json: bool) -> list[Processor]:
    if json:
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            order_keys,
            structlog.processors.JSONRenderer(separators=(",", ":")),
        ]
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_event,
        structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        ),
    ]


def configure_logging(
    *,
    json: bool | None = None,
    level: str | None = None,
    stream: TextIO | None = None,
    access_log_path: str | Path | None = None,
) -> None:
    """Route structlog and stdlib logging through one handler; safe to call again.

    `json=None` reads ``MAINSPRING_LOG_FORMAT`` (``json`` or ``console``), else
    writes JSON unless `stream` (default stderr) is a terminal. `level=None` reads
    ``MAINSPRING_LOG_LEVEL``, else INFO. With `access_log_path`, access lines go
    to that file (JSON, reopened after log rotation) instead of `stream`; above
    INFO they are not written at all.
    """
    stream = sys.stderr if stream is None else stream
    use_json = _resolve_format(json, stream)
    numeric_level = _resolve_level(level)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: calling this again, or structlog.testing, must reach loggers
        # that module globals already hold.
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    _replace_handler(root, _handler(logging.StreamHandler(stream), use_json))
    root.setLevel(numeric_level)

    for name in ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
        adopted.disabled = False
        if name.startswith(("uvicorn", "gunicorn")):
            adopted.setLevel(logging.NOTSET)
        if name in CHATTY_LOGGERS:
            adopted.addFilter(_info_as_debug)  # a filter already there is not added again
    for name in REPLACED_LOGGERS:
        replaced = logging.getLogger(name)
        # No handler on it or above it: uvicorn then skips building access lines at all.
        replaced.handlers.clear()
        replaced.propagate = False

    if numeric_level > logging.INFO:
        set_access_log(None)
    elif access_log_path is not None:
        set_access_log(JsonLinesFileAccessLog(access_log_path))
    elif use_json:
        set_access_log(JsonLinesAccessLog(stream))
    else:
        set_access_log(StructlogAccessLog())


def _handler(handler: logging.Handler, json: bool) -> logging.Handler:
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(),
            processors=renderer_processors(json),
        )
    )
    return handler


def _replace_handler(logger: logging.Logger, handler: logging.Handler | None) -> None:
    """Swap our previous handler on `logger` (if any) for `handler`, leaving others alone."""
    for previous in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
        logger.removeHandler(previous)
        previous.close()
    if handler is not None:
        logger.addHandler(handler)


def _resolve_format(json: bool | None, stream: TextIO) -> bool:
    if json is not None:
        return json
    chosen = os.environ.get("MAINSPRING_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "console"):
        return chosen == "json"
    if chosen:
        raise ValueError(f"MAINSPRING_LOG_FORMAT must be 'json' or 'console', not {chosen!r}")
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def _resolve_level(level: str | None) -> int:
    name = (level or os.environ.get("MAINSPRING_LOG_LEVEL") or "INFO").strip().upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {name!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return numeric
