"""The access log: one line per request, written straight to its stream.

The access line is the one line every request writes, so in JSON mode it skips
the general logging pipeline (two LogRecords, the processor chain, redaction), is
encoded by pydantic-core's JSON encoder and written as one line in one call. That
is safe because the middleware builds every field itself from values that cannot
hold a secret (method, route template, status, sizes, client address, request id).
In console mode, for development, it goes through structlog so that it reads like
the rest.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import suppress
from datetime import UTC, datetime
from json import dumps
from pathlib import Path
from typing import Any, Protocol, TextIO

import structlog
from pydantic_core import to_json

ACCESS_LOGGER = "mainspring.access"
FLUSH_DELAY = 0.05
"""Seconds an access line may wait in the buffer, so that a busy server writes them in batches."""
ROTATION_CHECK_INTERVAL = 1.0
"""How often, at most, a file sink looks whether logrotate moved its file, in seconds."""


class AccessLog(Protocol):
    def write(self, event: str, fields: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class StructlogAccessLog:
    """Through the configured structlog chain (the default, and console mode)."""

    def write(self, event: str, fields: dict[str, Any]) -> None:
        structlog.get_logger(ACCESS_LOGGER).info(event, **fields)

    def close(self) -> None:
        pass


class JsonLinesAccessLog:
    """One JSON object per line on `stream`, keys in the same order as other log lines.

    Lines written within `FLUSH_DELAY` of each other share one flush (one system call),
    so a busy server writes them in batches; outside a loop each line is flushed at once.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._flush_scheduled = False
        self._second = -1
        self._second_text = ""

    def write(self, event: str, fields: dict[str, Any]) -> None:
        # ISO 8601 UTC with microseconds; the date and time part is formatted once a second.
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        line = {
            "timestamp": f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z",
            "level": "info",
            "logger": ACCESS_LOGGER,
            "event": event,
            **fields,
        }
        try:
            text = to_json(line).decode()
        except ValueError:  # what pydantic-core cannot encode, such as a lone surrogate
            text = dumps(line, separators=(",", ":"))
        self._stream.write(text + "\n")
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._flush_scheduled = True
        loop.call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        with suppress(ValueError):  # closed by a reconfiguration meanwhile
            self._stream.flush()

    def close(self) -> None:
        pass


class JsonLinesFileAccessLog(JsonLinesAccessLog):
    """JSON lines appended to `path`, reopened when logrotate moves the file away.

    Whether the file moved is checked when lines are flushed, at most once a second.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._file = self._open()
        self._checked = time.monotonic()
        super().__init__(self._file)

    def _open(self) -> TextIO:
        return self._path.open("a", encoding="utf-8")

    def _flush(self) -> None:
        super()._flush()
        now = time.monotonic()
        if now - self._checked >= ROTATION_CHECK_INTERVAL and not self._file.closed:
            self._checked = now
            self._reopen_if_moved()

    def _reopen_if_moved(self) -> None:
        try:
            on_disk = os.stat(self._path)
        except FileNotFoundError:
            on_disk = None
        held = os.fstat(self._file.fileno())
        if on_disk is None or (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            self._file.close()
            self._file = self._stream = self._open()

    def close(self) -> None:
        super()._flush()
        self._file.close()


_sink: AccessLog | None = StructlogAccessLog()


def access_log() -> AccessLog | None:
    """Where access lines go now; None when the log level hides them."""
    return _sink


def set_access_log(sink: AccessLog | None) -> None:
    global _sink
    previous, _sink = _sink, sink
    if previous is not None and previous is not sink:
        previous.close()
