"""The long-lived clients a service needs, each opened and closed by the runtime.

The concrete resources are imported on first use, so that a process that never
touches SQLAlchemy or Redis does not pay for importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mainspring.resources.base import Resource

if TYPE_CHECKING:
    from mainspring.resources.database import Database, DbSession, db_session
    from mainspring.resources.http import HttpClient
    from mainspring.resources.lock import database_lock, finish_in_thread
    from mainspring.resources.redis import Redis

__all__ = [
    "Database",
    "DbSession",
    "HttpClient",
    "Redis",
    "Resource",
    "database_lock",
    "db_session",
    "finish_in_thread",
]

_HOMES = {
    "Database": "database",
    "DbSession": "database",
    "db_session": "database",
    "database_lock": "lock",
    "finish_in_thread": "lock",
    "HttpClient": "http",
    "Redis": "redis",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
