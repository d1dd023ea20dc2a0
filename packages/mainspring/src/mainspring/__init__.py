"""mainspring: the runtime around FastAPI handlers.

One lifespan owner (:class:`Runtime`) for resources and supervised background
services, with health, status, leases for singletons and a safe runner.
"""

from mainspring.children import dies_with_me
from mainspring.clock import Clock, ManualClock, SystemClock
from mainspring.dependencies import RuntimeDep, ServiceUnavailable, get_runtime, use
from mainspring.runtime import Gate, Runtime, setting
from mainspring.services.base import Service
from mainspring.services.loop import loop
from mainspring.services.policy import Backoff, RestartPolicy
from mainspring.services.state import ServiceState, ServiceStatus
from mainspring.services.stopped import ServiceStopped
from mainspring.settings import ConfigError, MainspringSettings, load_settings

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
    "dies_with_me",
    "get_runtime",
    "load_settings",
    "loop",
    "setting",
    "use",
]
