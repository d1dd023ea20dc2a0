"""One log format for every process of a run: the runner, gunicorn's master and its workers.

`configure_logging` puts one handler on the root logger; gunicorn's `Logger` and
uvicorn's worker each give their own loggers handlers of their own and stop them
propagating. `GunicornLogger` (in `gunicorn_logs`) and `LogOptions.apply` hand those
loggers back to the root.

Light to import: the CLI builds its options from these classes before loading anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True)
class LogOptions:
    format: LogFormat | None = None
    """None: ``MAINSPRING_LOG_FORMAT``, else JSON unless stderr is a terminal."""
    level: LogLevel | None = None
    """None: ``MAINSPRING_LOG_LEVEL``, else info."""
    access_log: Path | None = None
    """A file for the access lines, instead of the main output."""

    def apply(self) -> None:
        """(Re)configure logging in this process; warnings become log lines too."""
        from mainspring.observability.logging import configure_logging

        configure_logging(
            json=None if self.format is None else self.format is LogFormat.JSON,
            level=None if self.level is None else self.level.value,
            access_log_path=self.access_log,
        )
        logging.captureWarnings(True)
