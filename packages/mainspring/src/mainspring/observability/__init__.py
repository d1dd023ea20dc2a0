"""Structured logs with correlation ids, metrics, tracing and a loop watchdog.

``instrument(app)`` is the one call an app makes; ``mainspring run`` does the rest
(logging, the watchdog, metrics across workers).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from mainspring.observability.context import current_request_id, set_subject
from mainspring.observability.errors import install_error_handlers
from mainspring.observability.logging import configure_logging
from mainspring.observability.metrics import http_metrics
from mainspring.observability.middleware import RequestContextMiddleware

__all__ = [
    "RequestContextMiddleware",
    "configure_logging",
    "current_request_id",
    "instrument",
    "set_subject",
]

TRUSTED_PROXIES_ENV = "MAINSPRING_TRUSTED_PROXIES"


def instrument(app: FastAPI, *, trusted_proxies: list[str] | None = None) -> FastAPI:
    """Give `app` request ids, one access line per request, HTTP metrics and JSON errors.

    Call it once, after adding your own middleware, so that the request context is
    the outermost layer. `trusted_proxies` (IPs or CIDRs; default: the comma-separated
    ``MAINSPRING_TRUSTED_PROXIES``) are the peers whose ``X-Forwarded-For`` is believed.
    """
    if trusted_proxies is None:
        trusted_proxies = [p.strip() for p in os.environ.get(TRUSTED_PROXIES_ENV, "").split(",")]
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=http_metrics(),
        trusted_proxies=[proxy for proxy in trusted_proxies if proxy],
    )
    return app
