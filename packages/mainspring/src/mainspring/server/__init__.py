"""Running an app: bind the port safely, serve with uvicorn or gunicorn, drain on SIGTERM.

`run` is imported on first use: the CLI reads `RunOptions` without loading uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mainspring.server.exitcodes import StartError
from mainspring.server.options import RunOptions

if TYPE_CHECKING:
    from mainspring.server.runner import run

__all__ = ["RunOptions", "StartError", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from mainspring.server.runner import run

        return run
    raise AttributeError(f"module 'mainspring.server' has no attribute {name!r}")
