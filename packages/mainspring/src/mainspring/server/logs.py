"""One log format for every process of a run: the runner, gunicorn's master and its workers.

`configure_logging` puts one handler on the root logger; gunicorn's `Logger` and
uvicorn's worker each give their own loggers handlers of their own and stop them
propagating. `GunicornLogger` and `LogOptions.apply` hand those loggers back to the root.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from mainspring.observability.logging import configure_logging


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
        configure_logging(
            json=None if self.format is None else self.format is LogFormat.JSON,
            level=None if self.level is None else self.level.value,
            access_log_path=self.access_log,
        )
        logging.captureWarnings(True)


class GunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing through the root handler: no handler, format or level of
    its own, and no access lines (the request middleware writes those)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
        self.error_log.setLevel(logging.NOTSET)
        self.error_log.propagate = True
        self.access_log.propagate = False
