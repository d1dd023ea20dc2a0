"""mainspring: the runtime around FastAPI handlers.

One lifespan owner (:class:`Runtime`) for resources and supervised background
services, with health, status, leases for singletons and a safe runner.

The names below are imported on first use, so that `mainspring --help` and other
commands that need none of them do not pay for FastAPI, SQLAlchemy and structlog.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mainspring.clock import Clock, ManualClock, SystemClock
    from mainspring.dependencies import RuntimeDep, ServiceUnavailable, get_runtime, use
    from mainspring.runtime import Gate, Runtime, setting
    from mainspring.services.base import Service
    from mainspring.services.loop import loop
    from mainspring.services.policy import Backoff, RestartPolicy
    from mainspring.services.state import ServiceState, ServiceStatus
    from mainspring.services.stopped import ServiceStopped
    from mainspring.settings import ConfigError, MainspringSettings, load_settings

_HOMES = {
    "Backoff": "mainspring.services.policy",
    "Clock": "mainspring.clock",
    "ConfigError": "mainspring.settings",
    "Gate": "mainspring.runtime",
    "MainspringSettings": "mainspring.settings",
    "ManualClock": "mainspring.clock",
    "RestartPolicy": "mainspring.services.policy",
    "Runtime": "mainspring.runtime",
    "RuntimeDep": "mainspring.dependencies",
    "Service": "mainspring.services.base",
    "ServiceState": "mainspring.services.state",
    "ServiceStatus": "mainspring.services.state",
    "ServiceStopped": "mainspring.services.stopped",
    "ServiceUnavailable": "mainspring.dependencies",
    "SystemClock": "mainspring.clock",
    "get_runtime": "mainspring.dependencies",
    "load_settings": "mainspring.settings",
    "loop": "mainspring.services.loop",
    "setting": "mainspring.runtime",
    "use": "mainspring.dependencies",
}
"""Each public name and the module that defines it."""

__all__ = [
    "Backoff",
    "Clock",
    "ConfigError",
    "Gate",
    "MainspringSettings",
    "ManualClock",
    "RestartPolicy",
    "Runtime",
    "RuntimeDep",
    "Service",
    "ServiceState",
    "ServiceStatus",
    "ServiceStopped",
    "ServiceUnavailable",
    "SystemClock",
    "get_runtime",
    "load_settings",
    "loop",
    "setting",
    "use",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mainspring' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
