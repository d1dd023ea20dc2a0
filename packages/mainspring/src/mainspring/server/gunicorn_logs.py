"""gunicorn's logger, handed back to the root handler that `LogOptions.apply` configured."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]


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
